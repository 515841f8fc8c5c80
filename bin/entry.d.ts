export const BUILT_MAIN: string;
export function buildIsFresh(): boolean;
export function entryArgs(fresh?: boolean): string[];
