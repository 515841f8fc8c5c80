/** A call that must be refused: its error, as the client saw it. */
import { expect } from 'vitest';
import { ConnectError } from '../../src/client/index.js';

export async function refused(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call was expected to be refused').toBeInstanceOf(ConnectError);
  return err as ConnectError;
}
