// The wake-up loop of a periodic job shared by instances (LDAP sync, Finesse provisioning): one
// scan looks at every candidate, runs what is due and says how long to sleep (clamped to 1 s –
// 60 s); a realm change anywhere (a provider created or edited) brings the next scan forward to a
// second later. Scans never overlap: a wake-up during a scan runs one more scan right after it.
import type { Logger } from '../observability/logger.ts';
import { REALM_CHANGED_CHANNEL } from '../realms/registry.ts';
import type { Store } from '../store/db.ts';

export const MIN_WAIT_MS = 1000;
export const MAX_WAIT_MS = 60_000;
/** After a realm change: soon, but once for a burst of changes. */
const CHANGE_DELAY_MS = 1000;

export type PeriodicScan = {
  /** Scans now. */
  poke(): void;
  /** Aborts `abort`, stops the timer and waits for a running scan. */
  stop(): Promise<void>;
};

export function startPeriodicScan(deps: {
  store: Store;
  logger: Logger;
  /** For log lines, e.g. "LDAP sync". */
  name: string;
  /** Aborted by stop(); scans pass its signal on to the work they run. */
  abort: AbortController;
  /** Runs what is due; resolves to the milliseconds until the next due time. */
  scan(): Promise<number>;
}): PeriodicScan {
  const { store, logger, abort } = deps;
  let timer: NodeJS.Timeout | undefined;
  let wakeAt = Number.POSITIVE_INFINITY;
  let scanning: Promise<void> | undefined;
  let again = false;

  const schedule = (ms: number): void => {
    if (abort.signal.aborted) return;
    const at = Date.now() + ms;
    if (timer && at >= wakeAt) return;
    clearTimeout(timer);
    wakeAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      wakeAt = Number.POSITIVE_INFINITY;
      scanSoon();
    }, ms);
    timer.unref();
  };

  const scanSoon = (): void => {
    if (abort.signal.aborted) return;
    if (scanning) {
      again = true;
      return;
    }
    scanning = deps.scan().catch((err) => {
      logger.warn({ err }, `${deps.name} periodic scan failed`);
      return MAX_WAIT_MS;
    }).then((waitMs) => {
      scanning = undefined;
      if (again) {
        again = false;
        schedule(MIN_WAIT_MS);
      } else {
        schedule(Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, waitMs)));
      }
    });
  };

  void store.listen(REALM_CHANGED_CHANNEL, () => schedule(CHANGE_DELAY_MS)).catch((err) => {
    logger.warn({ err }, `${deps.name} scheduler cannot listen for realm changes; new providers are seen within a minute`);
  });
  schedule(MIN_WAIT_MS);

  return {
    poke: () => scanSoon(),
    async stop() {
      abort.abort();
      clearTimeout(timer);
      timer = undefined;
      await scanning;
    },
  };
}
