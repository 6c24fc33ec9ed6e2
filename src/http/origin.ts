// The public origin a realm is reached at: KC_HOSTNAME when set, otherwise the request's own
// (taking proxy headers only when KC_PROXY_HEADERS says the proxy sets them).
import type { Context } from 'koa';

import type { Config } from '../config.ts';

export class BadOriginError extends Error {}

const HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9.\-_]+)(:\d{1,5})?$/i;

function firstValue(header: string | undefined): string | undefined {
  return header?.split(',')[0]?.trim() || undefined;
}

/** RFC 7239 `Forwarded: for=..;proto=https;host=example.com`, first element. */
function parseForwarded(header: string): { proto?: string; host?: string } {
  const first = header.split(',')[0] ?? '';
  const out: { proto?: string; host?: string } = {};
  for (const pair of first.split(';')) {
    const [key, raw] = pair.split('=');
    const value = raw?.trim().replace(/^"|"$/g, '');
    if (!key || !value) continue;
    const name = key.trim().toLowerCase();
    if (name === 'proto') out.proto = value;
    if (name === 'host') out.host = value;
  }
  return out;
}

/** The client address in `Forwarded: for=...` (first element), without port or brackets. */
export function forwardedClient(header: string): string | undefined {
  const first = header.split(',')[0] ?? '';
  for (const pair of first.split(';')) {
    const [key, raw] = pair.split('=');
    if (key?.trim().toLowerCase() !== 'for' || !raw) continue;
    const value = raw.trim().replace(/^"|"$/g, '');
    const bracketed = /^\[([^\]]+)\]/.exec(value);
    return bracketed ? bracketed[1] : value.replace(/:\d+$/, '');
  }
  return undefined;
}

/**
 * The client's address: from the proxy's header when KC_PROXY_HEADERS says to trust one
 * (`Forwarded: for=`, or the first X-Forwarded-For entry), else the peer's. Everything Cloakroom
 * serves itself and oidc-provider (see dispatchToProvider in app.ts) see the same address.
 */
export function clientAddress(ctx: Context, config: Config): string {
  const peer = ctx.req.socket.remoteAddress ?? '';
  if (config.proxyHeaders === 'forwarded') return forwardedClient(ctx.get('forwarded')) || peer;
  if (config.proxyHeaders === 'xforwarded') return firstValue(ctx.get('x-forwarded-for')) || peer;
  return peer;
}

export function publicOrigin(ctx: Context, config: Config): string {
  if (config.hostname) return config.hostname;
  let proto: string = ctx.protocol;
  let host: string | undefined = ctx.get('host');
  if (config.proxyHeaders === 'xforwarded') {
    proto = firstValue(ctx.get('x-forwarded-proto')) ?? proto;
    host = firstValue(ctx.get('x-forwarded-host')) ?? host;
    const port = firstValue(ctx.get('x-forwarded-port'));
    if (port && host && !host.includes(':') && !((proto === 'https' && port === '443') || (proto === 'http' && port === '80'))) host = `${host}:${port}`;
  } else if (config.proxyHeaders === 'forwarded' && ctx.get('forwarded')) {
    const forwarded = parseForwarded(ctx.get('forwarded'));
    proto = forwarded.proto ?? proto;
    host = forwarded.host ?? host;
  }
  if (proto !== 'http' && proto !== 'https') throw new BadOriginError('Invalid forwarded protocol');
  if (!host || !HOST.test(host)) throw new BadOriginError('Invalid Host header');
  return `${proto}://${host.toLowerCase()}`;
}
