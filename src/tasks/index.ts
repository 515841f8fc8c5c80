/** The bundled task registry: the examples. Point TASKWIRE_TASKS at your own module. */
import { createRegistry } from './define.js';
import { add, fail, hello, progress, sleepTask, spin, tsum, unserializable } from './examples.js';

export default createRegistry(hello, sleepTask, spin, fail, unserializable, progress, add, tsum);
