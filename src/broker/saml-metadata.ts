// SAML identity provider metadata: Keycloak's import-config parsing (used by the Admin API), and,
// for providers with useMetadataDescriptorUrl, the IdP's current metadata at login time, so the
// IdP can roll its signing certificate or endpoints without an administrator (Keycloak 26 does the
// same). Fetched metadata is kept 10 minutes per provider; when it cannot be fetched, the stored
// config is used.
import { readBoundedBody } from '../http/bounded-response.ts';
import type { RealmContext } from '../realms/context.ts';
import type { IdentityProviderModel } from './types.ts';

export class SamlMetadataError extends Error {}

const METADATA_TTL_MS = 10 * 60 * 1000;
const METADATA_TIMEOUT_MS = 10_000;
const METADATA_MAX_BYTES = 1024 * 1024;
/** What the metadata decides over the stored config. */
const FROM_METADATA = ['idpEntityId', 'singleSignOnServiceUrl', 'singleLogoutServiceUrl', 'signingCertificate'] as const;

const cache = new Map<string, { config: Record<string, string>; expires: number }>();

/** The provider with its metadata's endpoints and certificates when it follows a descriptor URL. */
export async function withCurrentSamlMetadata<T extends IdentityProviderModel>(realm: RealmContext, idp: T, log?: (reason: string) => void): Promise<T> {
  const url = idp.config.metadataDescriptorUrl?.trim();
  if (idp.config.useMetadataDescriptorUrl !== 'true' || !url) return idp;
  const key = `${realm.id}|${idp.alias}|${url}`;
  let entry = cache.get(key);
  if (!entry || entry.expires < Date.now()) {
    try {
      entry = { config: parseSamlMetadata(await fetchMetadata(url)), expires: Date.now() + METADATA_TTL_MS };
      if (cache.size > 512) cache.delete(cache.keys().next().value!);
      cache.set(key, entry);
    } catch (error) {
      log?.(error instanceof Error ? error.message : String(error));
      return idp;
    }
  }
  const config = { ...idp.config };
  for (const name of FROM_METADATA) if (entry.config[name]) config[name] = entry.config[name];
  return { ...idp, config };
}

async function fetchMetadata(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(METADATA_TIMEOUT_MS), redirect: 'manual', headers: { accept: 'application/samlmetadata+xml, application/xml;q=0.9, */*;q=0.5' } });
  if (!response.ok) throw new SamlMetadataError(`metadata ${url}: HTTP ${response.status}`);
  const body = await readBoundedBody(response, METADATA_MAX_BYTES);
  if (!body) throw new SamlMetadataError(`metadata ${url}: too large`);
  return body.toString('utf8');
}

/**
 * Keycloak's SAMLIdentityProviderFactory.parseConfig, for the usual shape of IdP metadata: the
 * first EntityDescriptor with an IDPSSODescriptor; its SSO and SLO endpoints (POST binding
 * preferred), signing certificates, NameID format and WantAuthnRequestsSigned. A tag scanner,
 * not a full XML parser: enough for metadata documents, which are flat and attribute-based.
 */
export function parseSamlMetadata(text: string): Record<string, string> {
  const xml = text.replace(/<!--[\s\S]*?-->/g, '').replace(/<\?[\s\S]*?\?>/g, '');
  const tag = /<(\/?)(?:[\w.-]+:)?([\w.-]+)((?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  const attrs = (source: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const m of source.matchAll(/([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out[m[1]!.replace(/^[\w.-]+:/, '')] = decodeXml(m[2] ?? m[3] ?? '');
    return out;
  };
  let entityId: string | undefined;
  let inIdp = false;
  let done = false;
  let keyUse: string | undefined;
  let certStart = -1;
  const sso: Record<string, string> = {};
  const slo: Record<string, string> = {};
  const certificates: string[] = [];
  const encryption: string[] = [];
  let nameIdStart = -1;
  let nameIdFormat: string | undefined;
  let wantSigned = false;
  for (const m of xml.matchAll(tag)) {
    if (done) break;
    const [, closing, name, attrSource, selfClosing] = m;
    if (!closing) {
      const a = attrs(attrSource ?? '');
      if (name === 'EntityDescriptor') entityId = a.entityID;
      if (name === 'IDPSSODescriptor') { inIdp = true; wantSigned = a.WantAuthnRequestsSigned === 'true'; }
      if (!inIdp) continue;
      if (name === 'SingleSignOnService' && a.Binding && a.Location) sso[a.Binding] ??= a.Location;
      if (name === 'SingleLogoutService' && a.Binding && a.Location) slo[a.Binding] ??= a.Location;
      if (name === 'KeyDescriptor') keyUse = a.use ?? 'signing';
      if (name === 'X509Certificate' && !selfClosing) certStart = m.index + m[0].length;
      if (name === 'NameIDFormat' && !selfClosing) nameIdStart = m.index + m[0].length;
    } else {
      if (name === 'X509Certificate' && certStart >= 0) {
        const cert = xml.slice(certStart, m.index).replace(/\s+/g, '');
        (keyUse === 'encryption' ? encryption : certificates).push(cert);
        certStart = -1;
      }
      if (name === 'NameIDFormat' && nameIdStart >= 0) {
        nameIdFormat ??= decodeXml(xml.slice(nameIdStart, m.index).trim());
        nameIdStart = -1;
      }
      if (name === 'KeyDescriptor') keyUse = undefined;
      if (name === 'IDPSSODescriptor') done = true;
    }
  }
  if (!inIdp) throw new SamlMetadataError('Could not parse SAML identity provider metadata: no IDPSSODescriptor');
  const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
  const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
  const ssoUrl = sso[POST] ?? sso[REDIRECT];
  const sloUrl = slo[POST] ?? slo[REDIRECT];
  const config: Record<string, string> = {
    // Keycloak follows WantAuthnRequestsSigned here; Cloakroom checks the IdP's signatures whenever
    // the metadata publishes a signing certificate (an unsigned response is then refused).
    validateSignature: String(wantSigned || certificates.length > 0),
    wantAuthnRequestsSigned: String(wantSigned),
    postBindingResponse: String(sso[POST] !== undefined),
    postBindingAuthnRequest: String(sso[POST] !== undefined),
    postBindingLogout: String(slo[POST] !== undefined),
    loginHint: 'false',
    addExtensionsElementWithKeyInfo: 'false',
  };
  if (entityId) config.idpEntityId = entityId;
  if (ssoUrl) config.singleSignOnServiceUrl = ssoUrl;
  if (sloUrl) config.singleLogoutServiceUrl = sloUrl;
  if (certificates.length > 0) config.signingCertificate = certificates.join(',');
  if (encryption.length > 0) config.encryptionPublicKey = encryption[0]!;
  if (nameIdFormat) config.nameIDPolicyFormat = nameIdFormat;
  return config;
}

function decodeXml(value: string): string {
  return value.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e]!);
}
