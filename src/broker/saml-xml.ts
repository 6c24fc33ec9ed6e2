// XML plumbing shared by the SAML service provider: decoding a message safely (size limit, no
// DTD), schema validation (samlify with the xmllint validator), namespace-aware DOM helpers and
// XML signature verification that returns the signed bytes, so callers read only signed content.
import crypto, { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';

import { DOMParser } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';

import { BrokerError } from './types.ts';

export const NS = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
} as const;

export const BINDING = {
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
} as const;

export const STATUS_SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';

/** Largest SAML message accepted, base64 characters (and inflated bytes for the redirect binding). */
export const MAX_MESSAGE_SIZE = 256 * 1024;

/** SignatureMethod algorithms accepted on incoming messages (RSA only: no HMAC key confusion). */
const RSA_SIGNATURE_ALGORITHMS: Record<string, string> = {
  'http://www.w3.org/2000/09/xmldsig#rsa-sha1': 'sha1',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256': 'sha256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512': 'sha512',
};
const PSS_SHA256 = 'http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1';
const ALLOWED_TRANSFORMS = new Set([
  'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
  'http://www.w3.org/2001/10/xml-exc-c14n#',
  'http://www.w3.org/2001/10/xml-exc-c14n#WithComments',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments',
]);

// ---------------------------------------------------------------------------------------------
// samlify, loaded on first use with its schema validator

type Samlify = typeof import('samlify');
let samlifyLoading: Promise<Samlify> | undefined;

/**
 * samlify with the xmllint schema validator set (once). Both are loaded on first use: the xmllint
 * engine (emscripten) is several MB and the first validation compiles it (~1 s).
 *
 * The validator is @authenio/samlify-node-xmllint's engine and schemas, called without its
 * `validate` wrapper, which prints xmllint's messages (they quote values from the message, which
 * must not reach the logs) to the console on every invalid document.
 */
export function samlify(): Promise<Samlify> {
  samlifyLoading ??= (async () => {
    const imported = await import('samlify') as Samlify & { default?: Samlify };
    const lib = imported.default ?? imported;
    const require = createRequire(import.meta.url);
    const validatorPath = require.resolve('@authenio/samlify-node-xmllint');
    const fromValidator = createRequire(validatorPath);
    const xmllint = fromValidator('node-xmllint') as { validateXML(options: { xml: string; schema: string[] }): { errors: string[] | null } };
    const schema = (name: string): string => (fromValidator(`./schemas/${name}.js`) as { default: string }).default;
    // The emscripten file system names the schemas file_0.xsd...: the imports are renamed to match.
    const schemas = [
      schema('saml-schema-assertion-2.0.xsd').replace('xmldsig-core-schema.xsd', 'file_1.xsd').replace('xenc-schema.xsd', 'file_2.xsd'),
      schema('xmldsig-core-schema.xsd'),
      schema('xenc-schema.xsd').replace('xmldsig-core-schema.xsd', 'file_1.xsd'),
      schema('saml-schema-protocol-2.0.xsd').replace('saml-schema-assertion-2.0.xsd', 'file_0.xsd').replace('xmldsig-core-schema.xsd', 'file_1.xsd'),
    ];
    lib.setSchemaValidator({
      validate: async (xml: string) => {
        const result = withoutProcessHooks(() => xmllint.validateXML({ xml, schema: schemas }));
        if (result.errors) throw new Error('ERR_EXCEPTION_VALIDATE_XML');
        return 'SUCCESS_VALIDATE_XML';
      },
    });
    return lib;
  })();
  samlifyLoading.catch(() => { samlifyLoading = undefined; });
  return samlifyLoading;
}

/**
 * Runs the xmllint engine without what its emscripten runtime leaves on the process at every run:
 * an 'uncaughtException' listener (holding the run's whole heap: a leak) and a stdout 'drain'
 * listener that calls process.exit(), plus a blank console.log line. The run is synchronous, so
 * every listener added meanwhile is the engine's and is removed, and muting console.log silences
 * only it.
 */
function withoutProcessHooks<T>(run: () => T): T {
  type Listener = (...args: unknown[]) => void;
  const stdout = process.stdout;
  const exceptionListeners = new Set(process.rawListeners('uncaughtException'));
  const drainListeners = new Set(stdout.rawListeners('drain'));
  const log = console.log;
  console.log = () => {};
  try {
    return run();
  } finally {
    console.log = log;
    for (const listener of process.rawListeners('uncaughtException')) {
      if (!exceptionListeners.has(listener)) process.removeListener('uncaughtException', listener as Listener);
    }
    for (const listener of stdout.rawListeners('drain')) {
      if (!drainListeners.has(listener)) stdout.removeListener('drain', listener as Listener);
    }
  }
}

/** Schema-validates a SAML protocol message through samlify's validator. */
export async function validateSchema(xml: string, error: string): Promise<void> {
  const lib = await samlify();
  try {
    await lib.SamlLib.isValidXml(xml);
  } catch {
    throw new BrokerError(error, 'message does not conform to the SAML 2.0 schema');
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding and parsing

const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

function base64Bytes(value: string, error: string): Buffer {
  if (value.length > MAX_MESSAGE_SIZE) throw new BrokerError(error, `message larger than ${MAX_MESSAGE_SIZE} bytes`);
  if (!BASE64.test(value)) throw new BrokerError(error, 'message is not base64');
  return Buffer.from(value, 'base64');
}

/** HTTP-POST binding: base64 of the XML. */
export function decodePostMessage(value: string, error: string): string {
  return base64Bytes(value, error).toString('utf8');
}

/** HTTP-Redirect binding: base64 of the DEFLATE-compressed XML (inflated size bounded too). */
export function decodeRedirectMessage(value: string, error: string): string {
  const compressed = base64Bytes(value, error);
  try {
    return zlib.inflateRawSync(compressed, { maxOutputLength: MAX_MESSAGE_SIZE }).toString('utf8');
  } catch {
    throw new BrokerError(error, 'message is not DEFLATE-compressed or too large');
  }
}

/** A SAML message as a DOM: well-formed, no DTD (no entity tricks, XXE), namespaces resolved. */
export function parseXml(xml: string, error: string): Document {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new BrokerError(error, 'message contains a DTD');
  const problems: string[] = [];
  const doc = new DOMParser({
    errorHandler: { warning: () => {}, error: (m: unknown) => problems.push(String(m)), fatalError: (m: unknown) => problems.push(String(m)) },
  }).parseFromString(xml, 'text/xml') as unknown as Document;
  if (problems.length > 0 || !doc?.documentElement) throw new BrokerError(error, 'message is not well-formed XML');
  return doc;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers (namespace-aware, direct children only)

export function childElements(parent: Element, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  for (let node = parent.firstChild; node; node = node.nextSibling) {
    if (node.nodeType === 1 && (node as Element).namespaceURI === ns && (node as Element).localName === localName) out.push(node as Element);
  }
  return out;
}

/** The single child `ns:localName`, undefined when absent; more than one is refused. */
export function childElement(parent: Element, ns: string, localName: string, error: string): Element | undefined {
  const found = childElements(parent, ns, localName);
  if (found.length > 1) throw new BrokerError(error, `more than one ${localName} element`);
  return found[0];
}

/** Every element `ns:localName` in the subtree of `root` (root included). */
export function descendants(root: Element, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  const walk = (el: Element): void => {
    if (el.namespaceURI === ns && el.localName === localName) out.push(el);
    for (let node = el.firstChild; node; node = node.nextSibling) if (node.nodeType === 1) walk(node as Element);
  };
  walk(root);
  return out;
}

export const isElement = (el: Element, ns: string, localName: string): boolean => el.namespaceURI === ns && el.localName === localName;

/** An attribute's value, undefined when absent (xmldom returns '' for both). */
export function attribute(el: Element, name: string): string | undefined {
  return el.hasAttribute(name) ? el.getAttribute(name) ?? '' : undefined;
}

export function textOf(el: Element | undefined): string | undefined {
  return el ? (el.textContent ?? '').trim() : undefined;
}

/** An xs:dateTime as epoch milliseconds (UTC when it has no zone, as SAML times are); malformed values are refused. */
export function dateTime(value: string | undefined, name: string, error: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.exec(value);
  const ms = match ? Date.parse(match[2] ? value : `${value}Z`) : NaN;
  if (Number.isNaN(ms)) throw new BrokerError(error, `${name} is not a valid dateTime`);
  return ms;
}

// ---------------------------------------------------------------------------------------------
// Certificates and signatures

/** The IdP's signing certificates: Keycloak's signingCertificate, comma-separated base64 DER (PEM armour tolerated). */
export function signingCertificates(config: Record<string, string>): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const entry of (config.signingCertificate ?? '').split(',')) {
    const body = entry.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
    if (!body) continue;
    try {
      out.push(new X509Certificate(Buffer.from(body, 'base64')));
    } catch {
      // An unparsable entry cannot verify anything; the others still can.
    }
  }
  return out;
}

/**
 * Whether incoming messages must be signed: validateSignature === 'true'; when the key is absent
 * (configs created by hand rather than imported from metadata) signatures are required as soon
 * as a signing certificate is configured.
 */
export function signatureRequired(config: Record<string, string>): boolean {
  if (config.validateSignature === 'true') return true;
  if (config.validateSignature === 'false') return false;
  return Boolean(config.signingCertificate?.trim());
}

export type SignatureCheck =
  | { present: false }
  | { present: true; valid: false; reason: string }
  | { present: true; valid: true; signedXml: string };

/**
 * Verifies the enveloped signature that is a direct child of `element` (a Response, Assertion,
 * LogoutRequest...). Structural rules keep wrapping attacks out: one Signature, one Reference,
 * and that Reference names `element` itself by its ID; RSA algorithms and c14n/enveloped
 * transforms only. xml-crypto then checks digest and signature against our certificates only
 * (never a key from KeyInfo) and refuses documents with duplicate IDs. The result carries the
 * canonical bytes that were signed: callers read the signed content from them, not from `xml`.
 */
export function verifyEnvelopedSignature(xml: string, element: Element, certificates: X509Certificate[]): SignatureCheck {
  const signatures = childElements(element, NS.dsig, 'Signature');
  if (signatures.length === 0) return { present: false };
  if (signatures.length > 1) return { present: true, valid: false, reason: 'more than one signature' };
  const signature = signatures[0]!;
  const id = attribute(element, 'ID');
  const signedInfo = childElements(signature, NS.dsig, 'SignedInfo');
  const references = signedInfo.length === 1 ? childElements(signedInfo[0]!, NS.dsig, 'Reference') : [];
  if (!id || references.length !== 1 || attribute(references[0]!, 'URI') !== `#${id}`) {
    return { present: true, valid: false, reason: `signature does not reference the ${element.localName} it is in` };
  }
  const method = childElements(signedInfo[0]!, NS.dsig, 'SignatureMethod')[0];
  const algorithm = method ? attribute(method, 'Algorithm') : undefined;
  if (!algorithm || (!(algorithm in RSA_SIGNATURE_ALGORITHMS) && algorithm !== PSS_SHA256)) {
    return { present: true, valid: false, reason: 'unsupported signature algorithm' };
  }
  const transformsEl = childElements(references[0]!, NS.dsig, 'Transforms')[0];
  const transforms = transformsEl ? childElements(transformsEl, NS.dsig, 'Transform').map((t) => attribute(t, 'Algorithm') ?? '') : [];
  if (transforms.some((t) => !ALLOWED_TRANSFORMS.has(t))) return { present: true, valid: false, reason: 'unsupported signature transform' };
  if (certificates.length === 0) return { present: true, valid: false, reason: 'no signing certificate configured' };
  for (const certificate of certificates) {
    const verifier = new SignedXml({
      publicCert: certificate.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      getCertFromKeyInfo: () => null,
    });
    try {
      verifier.loadSignature(signature as unknown as Node);
      if (verifier.checkSignature(xml)) {
        const signed = verifier.getSignedReferences();
        if (signed.length === 1) return { present: true, valid: true, signedXml: signed[0]! };
      }
    } catch {
      // Digest or signature mismatch under this certificate: try the next one.
    }
  }
  return { present: true, valid: false, reason: 'signature does not verify with the configured certificates' };
}

/**
 * Verifies a detached redirect-binding signature (SAML bindings 3.4.4.1) over the octet string
 * `SAMLRequest=...&RelayState=...&SigAlg=...` with any of the certificates.
 */
export function verifyRedirectSignature(octetStrings: string[], sigAlg: string, signature: string, certificates: X509Certificate[]): boolean {
  const hash = RSA_SIGNATURE_ALGORITHMS[sigAlg];
  if (!hash && sigAlg !== PSS_SHA256) return false;
  const value = Buffer.from(signature, 'base64');
  for (const certificate of certificates) {
    for (const octets of octetStrings) {
      const key = sigAlg === PSS_SHA256
        ? { key: certificate.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: crypto.constants.RSA_PSS_SALTLEN_DIGEST }
        : certificate.publicKey;
      try {
        if (crypto.verify(hash ?? 'sha256', Buffer.from(octets, 'utf8'), key, value)) return true;
      } catch {
        // A key that cannot verify this algorithm (not RSA): try the next one.
      }
    }
  }
  return false;
}

export function xmlEscape(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
