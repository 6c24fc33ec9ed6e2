// What the suite's real peers (slapd, php -S for SimpleSAMLphp) share when they start: the tail of
// their stderr and their exit, for start-up failures worth a readable message.
import type { ChildProcess } from 'node:child_process';

/** A peer could not bind its port (another process took it): pick another and try again. */
export class AddressInUse extends Error {}

export type WatchedPeer = {
  /** The last 8 kB of stderr, plus a spawn error. */
  log(): string;
  /** undefined while running; null or a code once it has exited (-1: signal or spawn error). */
  exitCode(): number | null | undefined;
  exited: Promise<void>;
};

export function watchPeer(child: ChildProcess): WatchedPeer {
  let log = '';
  let exitCode: number | null | undefined;
  child.stderr?.on('data', (chunk: Buffer) => { log = (log + chunk.toString('utf8')).slice(-8_000); });
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => { exitCode = code ?? (signal ? -1 : null); resolve(); });
    child.on('error', (error) => { log += `\n${error.message}`; exitCode = -1; resolve(); });
  });
  return { log: () => log, exitCode: () => exitCode, exited };
}
