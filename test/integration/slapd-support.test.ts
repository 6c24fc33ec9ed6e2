// The real slapd the LDAP federation tests run against: fixtures, memberOf, binds, TLS (ldaps://
// and StartTLS with the test CA), stop/start with the data kept, and a bulk load.
import { Client } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { groupDn, groupLdif, personDn, personLdif, slapdAvailable, startSlapd, type Slapd } from '../support/slapd.ts';

describe.skipIf(!slapdAvailable('slapd test support'))('slapd test support', () => {
  let slapd: Slapd;

  beforeAll(async () => {
    slapd = await startSlapd({ tls: true, adSchema: true });
    await slapd.add([
      personLdif({ uid: 'jdoe', cn: 'John Doe', sn: 'Doe', givenName: 'John', mail: 'jdoe@example.org', password: 'Secret-1' }),
      groupLdif({ cn: 'agents', members: [personDn('jdoe')] }),
    ]);
  });

  afterAll(async () => {
    await slapd?.destroy();
  });

  it('finds the person with memberOf set by the overlay', async () => {
    const [entry, ...rest] = await slapd.search('(uid=jdoe)', ['uid', 'mail', 'memberOf', 'entryUUID']);
    expect(rest).toEqual([]);
    expect(entry).toMatchObject({
      dn: personDn('jdoe'),
      uid: 'jdoe',
      mail: 'jdoe@example.org',
      memberOf: groupDn('agents'),
    });
    expect(entry!.entryUUID).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('binds with the right password only', async () => {
    expect(await slapd.checkBind(personDn('jdoe'), 'Secret-1')).toBe(true);
    expect(await slapd.checkBind(personDn('jdoe'), 'wrong')).toBe(false);
    expect(await slapd.checkBind(personDn('jdoe'), '')).toBe(false);
    expect(await slapd.checkBind(personDn('nobody'), 'Secret-1')).toBe(false);
  });

  it('stores AD-like attributes on an auxiliary class', async () => {
    const guid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    await slapd.add(personLdif({
      uid: 'aduser', cn: 'Ad User', sn: 'User', password: 'Ad-pass-1',
      objectClasses: ['cloakroomAdUser'],
      attributes: { objectGUID: guid, sAMAccountName: 'aduser', userPrincipalName: 'aduser@example.org', userAccountControl: 514, pwdLastSet: 0, whenChanged: '20240102030405Z' },
    }));
    const [entry] = await slapd.search('(sAMAccountName=ADUSER)', ['objectGUID', 'userAccountControl', 'userPrincipalName', 'whenChanged']);
    expect(entry).toMatchObject({ userAccountControl: '514', userPrincipalName: 'aduser@example.org', whenChanged: '20240102030405Z' });
    expect(Buffer.isBuffer(entry!.objectGUID) && entry!.objectGUID.equals(guid)).toBe(true);
    expect(await slapd.search('(whenChanged>=20240101000000Z)', ['uid'])).toHaveLength(1);
  });

  it('modifies and deletes entries; memberOf follows', async () => {
    await slapd.add(personLdif({ uid: 'temp', cn: 'Temp', sn: 'Temp', password: 'x' }));
    await slapd.modify([
      `dn: ${groupDn('agents')}`, 'changetype: modify', 'add: member', `member: ${personDn('temp')}`,
    ].join('\n'));
    expect((await slapd.search('(uid=temp)', ['memberOf']))[0]).toMatchObject({ memberOf: groupDn('agents') });
    await slapd.delete(personDn('temp'));
    expect(await slapd.search('(uid=temp)')).toEqual([]);
    const [group] = await slapd.search('(cn=agents)', ['member'], { base: slapd.groupsDn, scope: 'one' });
    expect(group!.member).toEqual(personDn('jdoe'));
  });

  it('rejects an add that conflicts, with the LDAP result code', async () => {
    await expect(slapd.add(personLdif({ uid: 'jdoe', cn: 'x', sn: 'x' }))).rejects.toMatchObject({ resultCode: 68 });
  });

  it('serves ldaps:// with the test CA and refuses it without', async () => {
    const trusted = new Client({ url: slapd.ldapsUrl, tlsOptions: { ca: [slapd.caPem] }, connectTimeout: 2_000 });
    await trusted.bind(personDn('jdoe'), 'Secret-1');
    await trusted.unbind();
    const untrusted = new Client({ url: slapd.ldapsUrl, connectTimeout: 2_000 });
    await expect(untrusted.bind(personDn('jdoe'), 'Secret-1')).rejects.toThrow(/self.signed|certificate/i);
    await untrusted.unbind().catch(() => {});
  });

  it('serves StartTLS on ldap:// with the test CA and refuses it without', async () => {
    const trusted = new Client({ url: slapd.url, connectTimeout: 2_000 });
    await trusted.startTLS({ ca: [slapd.caPem] });
    await trusted.bind(personDn('jdoe'), 'Secret-1');
    await trusted.unbind();
    const untrusted = new Client({ url: slapd.url, connectTimeout: 2_000 });
    await expect(untrusted.startTLS({})).rejects.toThrow(/self.signed|certificate/i);
    await untrusted.unbind().catch(() => {});
  });

  it('stops (connections refused) and starts again on the same ports with the data', async () => {
    const { port, ldapsPort } = slapd;
    await slapd.stop();
    expect(slapd.pid).toBeUndefined();
    const client = new Client({ url: slapd.url, connectTimeout: 2_000 });
    await expect(client.bind(slapd.adminDn, slapd.adminPassword)).rejects.toThrow(/ECONNREFUSED/);
    await expect(slapd.checkBind(personDn('jdoe'), 'Secret-1')).rejects.toThrow(/ECONNREFUSED/);

    await slapd.start();
    expect(slapd.pid).toBeTypeOf('number');
    expect([slapd.port, slapd.ldapsPort]).toEqual([port, ldapsPort]);
    expect(await slapd.checkBind(personDn('jdoe'), 'Secret-1')).toBe(true);
    expect((await slapd.search('(uid=jdoe)', ['memberOf']))[0]).toMatchObject({ memberOf: groupDn('agents') });
  });

  it('hangs while paused and answers after resume', async () => {
    slapd.pause();
    try {
      const client = new Client({ url: slapd.url, connectTimeout: 1_000, timeout: 300 });
      await expect(client.bind(slapd.adminDn, slapd.adminPassword)).rejects.toThrow(/timed out/i);
      await client.unbind().catch(() => {});
    } finally {
      slapd.resume();
    }
    expect(await slapd.checkBind(personDn('jdoe'), 'Secret-1')).toBe(true);
  });

  it('bulk-loads 2,000 entries', async () => {
    const entries = Array.from({ length: 2_000 }, (_, i) =>
      personLdif({ uid: `bulk${i}`, cn: `Bulk ${i}`, sn: 'Bulk', mail: `bulk${i}@example.org`, password: `pw-${i}` }));
    const started = performance.now();
    await slapd.bulkAdd(entries);
    console.log(`slapd bulkAdd: 2,000 entries in ${Math.round(performance.now() - started)} ms`);
    expect(await slapd.search('(uid=bulk*)', ['1.1'])).toHaveLength(2_000);
    expect(await slapd.checkBind(personDn('bulk1999'), 'pw-1999')).toBe(true);
  });
});
