// Waiting on work that a caller's deadline may cut short, while the work itself runs on.

/** Waits for `promise`, or rejects with the signal's reason as soon as it aborts. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** The promise's value, or undefined as soon as the signal aborts (the promise keeps running). */
export function raceDeadline<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  return untilAborted(promise, signal).catch((err: unknown) => {
    if (signal.aborted && err === signal.reason) return undefined;
    throw err;
  });
}
