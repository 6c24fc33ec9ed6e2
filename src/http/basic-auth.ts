// Client credentials in an HTTP Basic header (RFC 6749 2.3.1: client id and secret each
// form-url-encoded, then joined by ':' and base64-encoded), read exactly as oidc-provider reads
// them, so the endpoints Cloakroom answers itself accept and refuse the same headers as its own.

export type BasicCredentials = { clientId: string; secret: string };

/** The credentials, or oidc-provider's invalid_request description of what is wrong. */
export type BasicAuthorization = BasicCredentials | { error: string };

const MALFORMED = { error: 'invalid authorization header value format' };
const BADLY_ENCODED = { error: 'client_id and client_secret in the authorization header are not properly encoded' };

/** Anything outside printable ASCII (RFC 6749's VSCHAR). */
const NOT_VSCHAR = /[^\x20-\x7E]/;

export function readBasicAuthorization(header: string): BasicAuthorization {
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0]!.toLowerCase() !== 'basic' || !isBase64(parts[1]!)) return MALFORMED;
  const basic = Buffer.from(parts[1]!, 'base64').toString('utf8');
  const colon = basic.indexOf(':');
  if (colon === -1) return MALFORMED;
  try {
    return { clientId: formDecode(basic.slice(0, colon)), secret: formDecode(basic.slice(colon + 1)) };
  } catch {
    return BADLY_ENCODED;
  }
}

/** Canonical base64 (Buffer.from would silently skip anything else). */
function isBase64(value: string): boolean {
  const match = /^([A-Za-z0-9+/]*)(={0,2})$/.exec(value);
  if (!match?.[1]) return false;
  const [, data, padding] = match as unknown as [string, string, string];
  const remainder = data.length % 4;
  if (!padding) return remainder !== 1;
  return (data.length + padding.length) % 4 === 0 && padding.length === 4 - remainder;
}

function formDecode(value: string): string {
  const decoded = decodeURIComponent(value.replace(/\+/g, '%20'));
  if (NOT_VSCHAR.test(decoded)) throw new URIError('not a VSCHAR');
  return decoded;
}
