// Pure rules behind sessions and redirects: Keycloak's redirect URI matching, session lifespans
// with remember-me and the idle grace, and the realm knobs Cloakroom reads from attributes.
import { describe, expect, it } from 'vitest';

import { redirectUriMatches } from '../../src/oidc/client-policy.ts';
import { absoluteRedirectUris } from '../../src/realms/context.ts';
import {
  argon2Params, loginFlow, offlineSessionLifespans, parseRealmSettings, passwordPolicyValue, refreshReuseGraceSeconds, ssoSessionLifespans,
} from '../../src/realms/settings.ts';

describe('redirect URI matching (Keycloak rule)', () => {
  it('matches exactly, or by prefix when the registered URI ends in *', () => {
    expect(redirectUriMatches(['https://app.test/cb'], 'https://app.test/cb')).toBe(true);
    expect(redirectUriMatches(['https://app.test/cb'], 'https://app.test/cb/')).toBe(false);
    expect(redirectUriMatches(['https://app.test/cb'], 'https://app.test/cb?x=1')).toBe(false);
    expect(redirectUriMatches(['https://app.test/*'], 'https://app.test/any/path?x=1')).toBe(true);
    expect(redirectUriMatches(['https://app.test/*'], 'https://evil.test/')).toBe(false);
    expect(redirectUriMatches(['https://app.test/*'], 'https://app.test.evil/')).toBe(false);
    expect(redirectUriMatches([], 'https://app.test/')).toBe(false);
  });

  it('resolves relative URIs against the root URL and drops unusable ones', () => {
    expect(absoluteRedirectUris(['/*', 'https://x.test/cb', 'javascript:alert(1)', 'not a url'], 'https://app.test/')).toEqual(['https://app.test/*', 'https://x.test/cb']);
    expect(absoluteRedirectUris(['/*'], null)).toEqual([]);
  });
});

describe('session lifespans', () => {
  const settings = parseRealmSettings({ ssoSessionIdleTimeout: 1800, ssoSessionMaxLifespan: 36000, ssoSessionIdleTimeoutRememberMe: 86400, ssoSessionMaxLifespanRememberMe: 0 });

  it('adds Keycloak\'s 2-minute grace to the idle timeout only', () => {
    expect(ssoSessionLifespans(settings, false)).toEqual({ idle: 1920, max: 36000 });
  });

  it('uses the remember-me variants when they are set', () => {
    expect(ssoSessionLifespans(settings, true)).toEqual({ idle: 86520, max: 36000 });
  });

  it('offline sessions have no max unless the realm limits them', () => {
    expect(offlineSessionLifespans(parseRealmSettings({}))).toEqual({ idle: 2592000 + 120, max: 0 });
    expect(offlineSessionLifespans(parseRealmSettings({ offlineSessionMaxLifespanEnabled: true, offlineSessionMaxLifespan: 100 })).max).toBe(100);
  });
});

describe('realm knobs', () => {
  it('reads policies from Keycloak\'s passwordPolicy string', () => {
    const settings = parseRealmSettings({ passwordPolicy: 'length(12) and hashIterations(3) and notUsername(undefined)' });
    expect(passwordPolicyValue(settings, 'length')).toBe('12');
    expect(passwordPolicyValue(settings, 'notUsername')).toBe('undefined');
    expect(passwordPolicyValue(settings, 'digits')).toBeUndefined();
    expect(argon2Params(settings)).toEqual({ memoryKiB: 19456, iterations: 3, parallelism: 1, hashLength: 32 });
  });

  it('defaults argon2id to m=19456 KiB, t=2, p=1 and clamps nonsense', () => {
    expect(argon2Params(parseRealmSettings({}))).toEqual({ memoryKiB: 19456, iterations: 2, parallelism: 1, hashLength: 32 });
    const odd = parseRealmSettings({ attributes: { 'cloakroom.argon2.memoryKiB': '5', 'cloakroom.argon2.parallelism': 'x' } });
    expect(argon2Params(odd)).toMatchObject({ memoryKiB: 1024, parallelism: 1 });
  });

  it('reads the login flow and the refresh grace window from realm attributes', () => {
    expect(loginFlow(parseRealmSettings({}))).toBe('username-first');
    expect(loginFlow(parseRealmSettings({ attributes: { 'cloakroom.loginFlow': 'username-password' } }))).toBe('username-password');
    expect(refreshReuseGraceSeconds(parseRealmSettings({}))).toBe(0);
    expect(refreshReuseGraceSeconds(parseRealmSettings({ attributes: { 'cloakroom.refreshTokenReuseGraceSeconds': '30' } }))).toBe(30);
    expect(refreshReuseGraceSeconds(parseRealmSettings({ attributes: { 'cloakroom.refreshTokenReuseGraceSeconds': '-4' } }))).toBe(0);
  });
});
