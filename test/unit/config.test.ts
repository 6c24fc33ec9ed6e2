// loadConfig: defaults, Keycloak's KC_* aliases and their value formats, precedence, and error
// reporting that names every bad variable at once.
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../../src/config.ts';

const KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1));

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig defaults', () => {
  it('gives the documented defaults for an empty environment', () => {
    expect(loadConfig({})).toEqual({
      databaseUrl: undefined,
      dbPoolSize: 10,
      dataDir: path.resolve('./data'),
      passwordBlacklistsDir: path.resolve('./data/password-blacklists'),
      http: { host: '0.0.0.0', port: 8080 },
      relativePath: '',
      hostname: undefined,
      proxyHeaders: undefined,
      bootstrapAdmin: undefined,
      masterKey: undefined,
      logLevel: 'info',
      realmCacheSize: 100,
    });
  });

  it('reads the password blacklists folder from its own variable or Keycloak\'s SPI option, else under the data directory', () => {
    expect(loadConfig({ CLOAKROOM_DATA_DIR: '/srv/cloakroom' }).passwordBlacklistsDir).toBe(path.resolve('/srv/cloakroom/password-blacklists'));
    expect(loadConfig({ KC_SPI_PASSWORD_POLICY__PASSWORD_BLACKLIST__BLACKLISTS_PATH: '/opt/lists' }).passwordBlacklistsDir).toBe('/opt/lists');
    expect(loadConfig({ KC_SPI_PASSWORD_POLICY_PASSWORD_BLACKLIST_BLACKLISTS_PATH: '/opt/old' }).passwordBlacklistsDir).toBe('/opt/old');
    expect(loadConfig({ CLOAKROOM_PASSWORD_BLACKLISTS_DIR: '/etc/lists', KC_SPI_PASSWORD_POLICY__PASSWORD_BLACKLIST__BLACKLISTS_PATH: '/opt/lists' }).passwordBlacklistsDir).toBe('/etc/lists');
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ KC_HTTP_PORT: '', CLOAKROOM_DATABASE_URL: '', KC_HOSTNAME: '' })).toMatchObject({
      http: { port: 8080 }, databaseUrl: undefined, hostname: undefined,
    });
  });

  it('does not read process.env when given an environment', () => {
    const before = process.env.CLOAKROOM_HTTP_PORT;
    process.env.CLOAKROOM_HTTP_PORT = '1234';
    try {
      expect(loadConfig({}).http.port).toBe(8080);
    } finally {
      if (before === undefined) delete process.env.CLOAKROOM_HTTP_PORT;
      else process.env.CLOAKROOM_HTTP_PORT = before;
    }
  });
});

describe('Keycloak aliases', () => {
  it('reads KC_HTTP_PORT and KC_HTTP_HOST', () => {
    expect(loadConfig({ KC_HTTP_PORT: '9090', KC_HTTP_HOST: '127.0.0.1' }).http).toEqual({ host: '127.0.0.1', port: 9090 });
  });

  it('prefers the CLOAKROOM_ name over the KC_ alias', () => {
    expect(loadConfig({ CLOAKROOM_HTTP_PORT: '7000', KC_HTTP_PORT: '9090' }).http.port).toBe(7000);
  });

  it('normalizes KC_HTTP_RELATIVE_PATH', () => {
    expect(loadConfig({ KC_HTTP_RELATIVE_PATH: '/auth' }).relativePath).toBe('/auth');
    expect(loadConfig({ KC_HTTP_RELATIVE_PATH: '/auth/' }).relativePath).toBe('/auth');
    expect(loadConfig({ KC_HTTP_RELATIVE_PATH: '/' }).relativePath).toBe('');
    expect(loadConfig({ KC_HTTP_RELATIVE_PATH: '/sso/kc' }).relativePath).toBe('/sso/kc');
  });

  it('turns KC_DB_URL (JDBC) with KC_DB_USERNAME/KC_DB_PASSWORD into a postgres URL with credentials', () => {
    const { databaseUrl } = loadConfig({
      KC_DB: 'postgres', KC_DB_URL: 'jdbc:postgresql://h:5433/db?ssl=true', KC_DB_USERNAME: 'keycloak', KC_DB_PASSWORD: 'p@ss:w/rd',
    });
    const url = new URL(databaseUrl!);
    expect(url.protocol).toBe('postgres:');
    expect(url.hostname).toBe('h');
    expect(url.port).toBe('5433');
    expect(url.pathname).toBe('/db');
    expect(url.searchParams.get('ssl')).toBe('true');
    expect(decodeURIComponent(url.username)).toBe('keycloak');
    // pg decodes the password with decodeURIComponent.
    expect(decodeURIComponent(url.password)).toBe('p@ss:w/rd');
  });

  it('takes a JDBC URL without credentials as is', () => {
    expect(loadConfig({ KC_DB_URL: 'jdbc:postgresql://db.internal/keycloak' }).databaseUrl).toBe('postgres://db.internal/keycloak');
  });

  it('ranks CLOAKROOM_DATABASE_URL over KC_DB_URL over DATABASE_URL', () => {
    const all = {
      CLOAKROOM_DATABASE_URL: 'postgres://one/db1', KC_DB_URL: 'jdbc:postgresql://two/db2', DATABASE_URL: 'postgres://three/db3',
    };
    expect(new URL(loadConfig(all).databaseUrl!).host).toBe('one');
    const { CLOAKROOM_DATABASE_URL: _, ...noCloakroom } = all;
    expect(new URL(loadConfig(noCloakroom).databaseUrl!).host).toBe('two');
    expect(new URL(loadConfig({ DATABASE_URL: all.DATABASE_URL }).databaseUrl!).host).toBe('three');
  });

  it('accepts KC_HOSTNAME as a URL or as a bare host name', () => {
    expect(loadConfig({ KC_HOSTNAME: 'https://sso.example.com' }).hostname).toBe('https://sso.example.com');
    expect(loadConfig({ KC_HOSTNAME: 'http://localhost:8180/' }).hostname).toBe('http://localhost:8180');
    expect(loadConfig({ KC_HOSTNAME: 'sso.example.com' }).hostname).toBe('https://sso.example.com');
    expect(loadConfig({ KC_HOSTNAME: 'SSO.Example.com:8443' }).hostname).toBe('https://sso.example.com:8443');
  });

  it('reads the bootstrap admin from KC_BOOTSTRAP_ADMIN_* or the legacy KEYCLOAK_ADMIN*', () => {
    expect(loadConfig({ KC_BOOTSTRAP_ADMIN_USERNAME: 'admin', KC_BOOTSTRAP_ADMIN_PASSWORD: 'pw' }).bootstrapAdmin)
      .toEqual({ username: 'admin', password: 'pw' });
    expect(loadConfig({ KEYCLOAK_ADMIN: 'root', KEYCLOAK_ADMIN_PASSWORD: 'pw2' }).bootstrapAdmin)
      .toEqual({ username: 'root', password: 'pw2' });
  });

  it('reads log level, proxy headers and pool size from their KC_ names', () => {
    expect(loadConfig({ KC_LOG_LEVEL: 'DEBUG', KC_PROXY_HEADERS: 'xforwarded', KC_DB_POOL_MAX_SIZE: '25' }))
      .toMatchObject({ logLevel: 'debug', proxyHeaders: 'xforwarded', dbPoolSize: 25 });
  });
});

describe('master key', () => {
  it('accepts 64 hex digits', () => {
    expect(loadConfig({ CLOAKROOM_MASTER_KEY: KEY.toString('hex') }).masterKey).toEqual(KEY);
    expect(loadConfig({ CLOAKROOM_MASTER_KEY: KEY.toString('hex').toUpperCase() }).masterKey).toEqual(KEY);
  });

  it('accepts base64', () => {
    expect(loadConfig({ CLOAKROOM_MASTER_KEY: KEY.toString('base64') }).masterKey).toEqual(KEY);
  });

  it('rejects anything that is not 32 bytes', () => {
    for (const value of ['short', KEY.subarray(0, 16).toString('base64'), KEY.toString('hex').slice(0, 62), Buffer.concat([KEY, KEY]).toString('base64')]) {
      const error = configError({ CLOAKROOM_MASTER_KEY: value });
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/^CLOAKROOM_MASTER_KEY: /);
      expect(error.problems[0]).toMatch(/32 bytes/);
    }
  });
});

describe('invalid configuration', () => {
  it('reports every bad variable, one line each, naming the variable', () => {
    const bad: Record<string, string> = {
      KC_HTTP_PORT: '99999',
      CLOAKROOM_DB_POOL_SIZE: '0',
      KC_HTTP_RELATIVE_PATH: 'auth',
      KC_HOSTNAME: 'ftp://files.example.com',
      CLOAKROOM_MASTER_KEY: 'not-a-key',
      KC_LOG_LEVEL: 'loud',
      KC_PROXY_HEADERS: 'none',
      KC_DB: 'mysql',
      KC_DB_URL: 'jdbc:mysql://h/db',
      CLOAKROOM_REALM_CACHE_SIZE: 'many',
    };
    const error = configError(bad);
    expect(error.problems).toHaveLength(Object.keys(bad).length);
    for (const name of Object.keys(bad)) {
      expect(error.problems.filter((line) => line.startsWith(`${name}=`) || line.startsWith(`${name}: `)), name).toHaveLength(1);
    }
    expect(error.message.split('\n')).toEqual(error.problems);
  });

  it('names the variable for a half-configured bootstrap admin', () => {
    expect(configError({ KC_BOOTSTRAP_ADMIN_USERNAME: 'admin' }).problems).toEqual([expect.stringMatching(/^KC_BOOTSTRAP_ADMIN_USERNAME .*KC_BOOTSTRAP_ADMIN_PASSWORD/)]);
    expect(configError({ KC_BOOTSTRAP_ADMIN_PASSWORD: 'pw' }).problems).toEqual([expect.stringMatching(/^KC_BOOTSTRAP_ADMIN_PASSWORD /)]);
  });

  it('rejects non-numeric and out-of-range numbers', () => {
    for (const [name, value] of [['KC_HTTP_PORT', 'http'], ['KC_HTTP_PORT', '-1'], ['KC_HTTP_PORT', '80.5'], ['KC_DB_POOL_MAX_SIZE', '5000']] as const) {
      const error = configError({ [name]: value });
      expect(error.problems, `${name}=${value}`).toHaveLength(1);
      expect(error.problems[0]).toMatch(new RegExp(`^${name}[=:]`));
    }
  });

  it('rejects a blank or non-decimal port instead of reading it as a number', () => {
    // Number(' ') is 0 (a random port) and Number('0x1F90') is 8080; Keycloak (Integer.parseInt) rejects both.
    for (const value of [' ', '0x1F90', '1e3']) {
      const error = configError({ KC_HTTP_PORT: value });
      expect(error.problems, JSON.stringify(value)).toEqual([expect.stringMatching(/^KC_HTTP_PORT=/)]);
    }
  });

  it('names the alias that was actually set', () => {
    expect(configError({ CLOAKROOM_HTTP_PORT: 'x' }).problems[0]).toMatch(/^CLOAKROOM_HTTP_PORT=/);
    expect(configError({ KC_HTTP_PORT: 'x' }).problems[0]).toMatch(/^KC_HTTP_PORT=/);
  });
});
