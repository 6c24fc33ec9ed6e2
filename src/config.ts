// Environment -> typed Config. Keycloak's KC_* names are accepted wherever Keycloak has one,
// so a Keycloak deployment's environment carries over unchanged.
import path from 'node:path';
import { z } from 'zod';

export type Config = {
  /** PostgreSQL URL; undefined = embedded PGlite under dataDir. */
  databaseUrl: string | undefined;
  dbPoolSize: number;
  dataDir: string;
  /** Keycloak's password-blacklists folder: the files passwordBlacklist(<file>) policies name. */
  passwordBlacklistsDir: string;
  http: { host: string; port: number };
  /** '' for the default layout, '/auth' for the legacy one; never ends with '/'. */
  relativePath: string;
  /** Fixed public origin (scheme://host[:port]); undefined = derive it from each request. */
  hostname: string | undefined;
  proxyHeaders: 'forwarded' | 'xforwarded' | undefined;
  bootstrapAdmin: { username: string; password: string } | undefined;
  /** 32-byte key that seals secrets at rest; undefined = key file in dataDir (dev). */
  masterKey: Buffer | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  realmCacheSize: number;
};

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/** Plain decimal digits only: Number() would also take ' ', '0x1F90' and '1e3'. */
const digits = z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number);
const port = digits.pipe(z.number().int().min(0).max(65535));
const positiveInt = digits.pipe(z.number().int().min(1));

/** KC_DB_URL is a JDBC URL (jdbc:postgresql://host:port/db?params); pg wants postgres://. */
function jdbcToPostgresUrl(value: string, user?: string, password?: string): string {
  const raw = value.startsWith('jdbc:') ? value.slice('jdbc:'.length) : value;
  const url = new URL(raw.replace(/^postgresql:/, 'postgres:'));
  if (url.protocol !== 'postgres:') throw new Error(`unsupported database URL scheme "${url.protocol}"`);
  if (user) url.username = encodeURIComponent(user);
  if (password) url.password = encodeURIComponent(password);
  return url.toString();
}

function normalizeRelativePath(value: string): string {
  const trimmed = value.trim().replace(/\/+$/, '');
  if (trimmed === '') return '';
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(trimmed)) throw new Error('must be a path such as "/" or "/auth"');
  return trimmed;
}

/** KC_HOSTNAME is a full URL (Keycloak 25+ hostname v2) or a bare host name (v1). */
function normalizeHostname(value: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(value) ? value : `https://${value}`;
  const url = new URL(withScheme);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http(s) URL or a host name');
  if (url.pathname !== '/' && url.pathname !== '') throw new Error('a path in the hostname is not supported; set KC_HTTP_RELATIVE_PATH instead');
  return url.origin;
}

function decodeMasterKey(value: string): Buffer {
  const key = /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  if (key.length !== 32) throw new Error('must be 32 bytes, as 64 hex digits or base64');
  return key;
}

/** First defined, non-empty value among the given variable names. */
function pick(env: Env, ...names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return { name, value };
  }
  return undefined;
}

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];

  function read<T>(names: string[], parse: (value: string) => T, fallback: T): T {
    const found = pick(env, ...names);
    if (!found) return fallback;
    try {
      return parse(found.value);
    } catch (error) {
      const message = error instanceof z.ZodError
        ? error.issues.map((issue) => issue.message).join('; ')
        : (error as Error).message;
      // Values of secret-bearing variables are never echoed.
      const shown = /KEY|PASSWORD|SECRET|URL/.test(found.name) ? '' : `=${JSON.stringify(found.value)}`;
      problems.push(`${found.name}${shown}: ${message}`);
      return fallback;
    }
  }

  const dbUser = pick(env, 'CLOAKROOM_DB_USERNAME', 'KC_DB_USERNAME')?.value;
  const dbPassword = pick(env, 'CLOAKROOM_DB_PASSWORD', 'KC_DB_PASSWORD')?.value;
  const databaseUrl = read(['CLOAKROOM_DATABASE_URL', 'KC_DB_URL', 'DATABASE_URL'],
    (value) => jdbcToPostgresUrl(value, dbUser, dbPassword), undefined as string | undefined);

  const kcDb = pick(env, 'KC_DB');
  if (kcDb && kcDb.value !== 'postgres') problems.push(`KC_DB=${JSON.stringify(kcDb.value)}: only "postgres" is supported`);

  const logLevel = read(['CLOAKROOM_LOG_LEVEL', 'KC_LOG_LEVEL'],
    (value) => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).parse(value.toLowerCase()),
    'info' as Config['logLevel']);

  const bootstrapUser = pick(env, 'KC_BOOTSTRAP_ADMIN_USERNAME', 'KEYCLOAK_ADMIN')?.value;
  const bootstrapPassword = pick(env, 'KC_BOOTSTRAP_ADMIN_PASSWORD', 'KEYCLOAK_ADMIN_PASSWORD')?.value;
  if (bootstrapUser && !bootstrapPassword) problems.push('KC_BOOTSTRAP_ADMIN_USERNAME is set but KC_BOOTSTRAP_ADMIN_PASSWORD is not');
  if (bootstrapPassword && !bootstrapUser) problems.push('KC_BOOTSTRAP_ADMIN_PASSWORD is set but KC_BOOTSTRAP_ADMIN_USERNAME is not');

  const dataDir = path.resolve(read(['CLOAKROOM_DATA_DIR'], (v) => v, './data'));
  const config: Config = {
    databaseUrl,
    dbPoolSize: read(['CLOAKROOM_DB_POOL_SIZE', 'KC_DB_POOL_MAX_SIZE'], (v) => positiveInt.pipe(z.number().max(1000)).parse(v), 10),
    dataDir,
    passwordBlacklistsDir: path.resolve(read(
      ['CLOAKROOM_PASSWORD_BLACKLISTS_DIR', 'KC_SPI_PASSWORD_POLICY__PASSWORD_BLACKLIST__BLACKLISTS_PATH', 'KC_SPI_PASSWORD_POLICY_PASSWORD_BLACKLIST_BLACKLISTS_PATH'],
      (v) => v, path.join(dataDir, 'password-blacklists'))),
    http: {
      host: read(['CLOAKROOM_HTTP_HOST', 'KC_HTTP_HOST'], (v) => z.string().min(1).parse(v), '0.0.0.0'),
      port: read(['CLOAKROOM_HTTP_PORT', 'KC_HTTP_PORT'], (v) => port.parse(v), 8080),
    },
    relativePath: read(['CLOAKROOM_HTTP_RELATIVE_PATH', 'KC_HTTP_RELATIVE_PATH'], normalizeRelativePath, ''),
    hostname: read(['CLOAKROOM_HOSTNAME', 'KC_HOSTNAME'], normalizeHostname, undefined as string | undefined),
    proxyHeaders: read(['CLOAKROOM_PROXY_HEADERS', 'KC_PROXY_HEADERS'],
      (v) => z.enum(['forwarded', 'xforwarded'], { message: 'must be "forwarded" or "xforwarded"' }).parse(v),
      undefined as Config['proxyHeaders']),
    bootstrapAdmin: bootstrapUser && bootstrapPassword ? { username: bootstrapUser, password: bootstrapPassword } : undefined,
    masterKey: read(['CLOAKROOM_MASTER_KEY'], decodeMasterKey, undefined as Buffer | undefined),
    logLevel,
    realmCacheSize: read(['CLOAKROOM_REALM_CACHE_SIZE'], (v) => positiveInt.pipe(z.number().max(100000)).parse(v), 100),
  };

  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
