import { describe, expect, it } from 'vitest';

import { readBasicAuthorization } from '../../src/http/basic-auth.ts';

const header = (raw: string, scheme = 'Basic'): string => `${scheme} ${Buffer.from(raw, 'utf8').toString('base64')}`;
const MALFORMED = { error: 'invalid authorization header value format' };
const BADLY_ENCODED = { error: 'client_id and client_secret in the authorization header are not properly encoded' };

describe('readBasicAuthorization', () => {
  it('form-decodes the client id and secret (RFC 6749 2.3.1), the scheme in any case', () => {
    expect(readBasicAuthorization(header('web-app:s3cret'))).toEqual({ clientId: 'web-app', secret: 's3cret' });
    expect(readBasicAuthorization(header('my%3Aapp:a+b%2Bc%25', 'bAsIc'))).toEqual({ clientId: 'my:app', secret: 'a b+c%' });
    // Only the first colon separates: a secret may hold more.
    expect(readBasicAuthorization(header('app:x:y'))).toEqual({ clientId: 'app', secret: 'x:y' });
    expect(readBasicAuthorization(header('app:'))).toEqual({ clientId: 'app', secret: '' });
  });

  it('accepts unpadded base64 of any valid length', () => {
    const unpadded = Buffer.from('app:secret1').toString('base64').replace(/=+$/, '');
    expect(readBasicAuthorization(`Basic ${unpadded}`)).toEqual({ clientId: 'app', secret: 'secret1' });
  });

  it('refuses other schemes, extra parts, non-canonical base64 and a missing colon as malformed', () => {
    expect(readBasicAuthorization(header('app:secret', 'Bearer'))).toEqual(MALFORMED);
    expect(readBasicAuthorization(`${header('app:secret')} extra`)).toEqual(MALFORMED);
    expect(readBasicAuthorization('Basic')).toEqual(MALFORMED);
    expect(readBasicAuthorization('Basic ')).toEqual(MALFORMED);
    expect(readBasicAuthorization('Basic YXBwOnNlY3JldA=')).toEqual(MALFORMED); // wrong padding
    expect(readBasicAuthorization('Basic YXBw*nNlY3JldA==')).toEqual(MALFORMED);
    expect(readBasicAuthorization('Basic YXBwOnNlY3JldA==a')).toEqual(MALFORMED);
    expect(readBasicAuthorization(header('app-secret'))).toEqual(MALFORMED);
  });

  it('refuses broken percent-encoding and characters outside printable ASCII as badly encoded', () => {
    expect(readBasicAuthorization(header('app:%E0%A4%A'))).toEqual(BADLY_ENCODED);
    expect(readBasicAuthorization(header('app:caf%C3%A9'))).toEqual(BADLY_ENCODED);
    expect(readBasicAuthorization(header('app:tab%09'))).toEqual(BADLY_ENCODED);
  });
});
