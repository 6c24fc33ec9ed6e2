// Finds a PostgreSQL server for the tests that only make sense on real PostgreSQL (several
// pools or instances on one database). DATABASE_URL when set; otherwise a local server at the
// default port, if one answers within a second. Outside CI a missing server skips those tests
// with a printed reason; in CI (CI=true) it is an error, so CI can never pass by skipping.
import pg from 'pg';

export const LOCAL_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export type PostgresProbe = { url: string; reason?: undefined } | { url: undefined; reason: string };

/** Connects and runs SELECT 1 within timeoutMs; says why not when it cannot. */
export async function probePostgres(url: string, timeoutMs = 1000): Promise<PostgresProbe> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([(async () => {
      await client.connect();
      await client.query('SELECT 1');
    })(), timeout]);
    return { url };
  } catch (error) {
    return { url: undefined, reason: `PostgreSQL at ${redact(url)} is unreachable: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
    await client.end().catch(() => {});
  }
}

/**
 * The admin URL PostgreSQL-only tests create their databases on, or undefined (tests skip).
 * Throws when no server is reachable and either CI=true or DATABASE_URL was set explicitly.
 */
export async function postgresForTests(what: string): Promise<string | undefined> {
  const configured = process.env.DATABASE_URL || undefined;
  const probe = await probePostgres(configured ?? LOCAL_POSTGRES_URL);
  if (probe.url) return probe.url;
  if (process.env.CI === 'true') throw new Error(`${what}: PostgreSQL is required and CI=true forbids skipping: ${probe.reason}`);
  if (configured) throw new Error(`${what}: DATABASE_URL is set but ${probe.reason}`);
  console.warn(`skipping ${what}: ${probe.reason} (set DATABASE_URL or start PostgreSQL on 127.0.0.1:5432)`);
  return undefined;
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
