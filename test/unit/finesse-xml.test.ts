import { describe, expect, it } from 'vitest';

import { FinesseResponseError, parseFinesseTeams, parseFinesseUser, parseFinesseUsers } from '../../src/federation/finesse/xml.ts';

// The <User> document of cx-platforms.md section 2 (Finesse developer guide, User API), with
// the nested elements a real server sends (ReasonCode, settings, mobileAgent, dialogs).
const SUPERVISOR_XML = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<User>
  <uri>/finesse/api/User/1001001</uri>
  <roles>
    <role>Agent</role>
    <role>Supervisor</role>
  </roles>
  <loginId>1001001</loginId>
  <loginName>csmith</loginName>
  <state>NOT_READY</state>
  <stateChangeTime>2026-01-15T09:30:00.000Z</stateChangeTime>
  <pendingState/>
  <reasonCodeId>2</reasonCodeId>
  <ReasonCode>
    <category>NOT_READY</category>
    <code>2</code>
    <label>Lunch</label>
    <id>2</id>
    <uri>/finesse/api/ReasonCode/2</uri>
  </ReasonCode>
  <settings><wrapUpOnIncoming>OPTIONAL</wrapUpOnIncoming></settings>
  <extension>1001001</extension>
  <mobileAgent><mode/><dialNumber/></mobileAgent>
  <firstName>Chris</firstName>
  <lastName>Smith</lastName>
  <teamId>500</teamId>
  <teamName>Sales</teamName>
  <skillTargetId>5001</skillTargetId>
  <dialogs>/finesse/api/User/1001001/Dialogs</dialogs>
  <teams>
    <Team><uri>/finesse/api/Team/2001</uri><id>2001</id><name>Support</name></Team>
    <Team><uri>/finesse/api/Team/2002</uri><id>2002</id><name>Billing &amp; Refunds</name></Team>
  </teams>
</User>`;

const agentXml = (body: string) => `<User><uri>/finesse/api/User/1002</uri>${body}</User>`;

function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(FinesseResponseError);
    return (error as FinesseResponseError).reason;
  }
  throw new Error('expected a FinesseResponseError');
}

describe('parseFinesseUser', () => {
  it('reads the documented User XML of a supervisor: roles, names, extension, own team and supervised teams', () => {
    expect(parseFinesseUser(SUPERVISOR_XML)).toEqual({
      loginId: '1001001',
      loginName: 'csmith',
      firstName: 'Chris',
      lastName: 'Smith',
      extension: '1001001',
      roles: ['Agent', 'Supervisor'],
      teamId: '500',
      teamName: 'Sales',
      supervisedTeams: [{ id: '2001', name: 'Support' }, { id: '2002', name: 'Billing & Refunds' }],
    });
  });

  it('reads an agent with a single role, a single team and an empty <teams/>', () => {
    const user = parseFinesseUser(agentXml('<roles><role>Agent</role></roles><loginId>1002</loginId><loginName>ajones</loginName><teamId>500</teamId><teamName>Sales</teamName><teams/>'));
    expect(user.roles).toEqual(['Agent']);
    expect(user.supervisedTeams).toEqual([]);
    expect(user.teamName).toBe('Sales');
  });

  it('reads a single supervised <Team> as a list of one', () => {
    const user = parseFinesseUser(agentXml('<roles><role>Supervisor</role></roles><loginId>1003</loginId><loginName>sup</loginName><teams><Team><id>7</id><name>Night</name></Team></teams>'));
    expect(user.supervisedTeams).toEqual([{ id: '7', name: 'Night' }]);
    expect(user.roles).toEqual(['Supervisor']);
  });

  it('keeps ids as text (leading zeros), decodes entities and character references once', () => {
    const user = parseFinesseUser(agentXml('<loginId>001002</loginId><loginName>o&apos;brien</loginName><firstName>Zo&#xEB; &amp;lt;</firstName><lastName>&#65;</lastName>'));
    expect(user.loginId).toBe('001002');
    expect(user.loginName).toBe("o'brien");
    expect(user.firstName).toBe('Zoë &lt;');
    expect(user.lastName).toBe('A');
  });

  it('keeps only the Agent and Supervisor roles, once each', () => {
    const user = parseFinesseUser(agentXml('<roles><role>Administrator</role><role>supervisor</role><role>Agent</role><role>Agent</role></roles><loginId>1</loginId>'));
    expect(user.roles).toEqual(['Agent', 'Supervisor']);
  });

  it('turns missing or empty optional fields into null and empty lists', () => {
    expect(parseFinesseUser('<User><loginId>1004</loginId><extension/><firstName></firstName></User>')).toEqual({
      loginId: '1004', loginName: '1004', firstName: null, lastName: null, extension: null,
      roles: [], teamId: null, teamName: null, supervisedTeams: [],
    });
  });

  it('skips supervised teams without an id and names a nameless one by its id', () => {
    const user = parseFinesseUser(agentXml('<loginId>1</loginId><teams><Team><name>No id</name></Team><Team><id>9</id></Team></teams>'));
    expect(user.supervisedTeams).toEqual([{ id: '9', name: '9' }]);
  });

  it('refuses a User without loginId', () => {
    expect(refusal(() => parseFinesseUser(agentXml('<loginName>nobody</loginName>')))).toBe('<User> has no loginId');
    expect(refusal(() => parseFinesseUser('<User/>'))).toMatch(/empty/);
  });

  it('refuses fields that are not text (nested or repeated)', () => {
    expect(refusal(() => parseFinesseUser(agentXml('<loginId>1<b/>2</loginId>')))).toMatch(/loginId.*not a text element/);
    expect(refusal(() => parseFinesseUser(agentXml('<loginId>1</loginId><loginId>2</loginId>')))).toMatch(/not a text element/);
    expect(refusal(() => parseFinesseUser(agentXml('<loginId>1</loginId><roles>Agent</roles>')))).toMatch(/roles.*not a list element/);
  });

  it('refuses malformed XML, other documents and non-XML', () => {
    expect(refusal(() => parseFinesseUser('<User><loginId>1</loginId><roles><role>Agent</ro'))).toMatch(/^malformed XML/);
    expect(refusal(() => parseFinesseUser('<User><loginId>1</User>'))).toMatch(/^malformed XML/);
    expect(refusal(() => parseFinesseUser(''))).toMatch(/^malformed XML/);
    expect(refusal(() => parseFinesseUser('<html><body>Service Unavailable</body></html>'))).toBe('expected a <User> document, got <html>');
    expect(refusal(() => parseFinesseUser('{"loginId":"1"}'))).toMatch(/^malformed XML/);
  });

  it('refuses DOCTYPE and entity declarations: no XML bomb, no external entity', () => {
    const bomb = `<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<User><loginId>&lol3;</loginId></User>`;
    expect(refusal(() => parseFinesseUser(bomb))).toMatch(/DOCTYPE/);
    const external = '<!DOCTYPE User [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><User><loginId>&xxe;</loginId></User>';
    expect(refusal(() => parseFinesseUser(external))).toMatch(/DOCTYPE/);
    // An undeclared entity reference stays as it is (never resolved).
    expect(parseFinesseUser('<User><loginId>&xxe;</loginId></User>').loginId).toBe('&xxe;');
  });
});

describe('parseFinesseUsers', () => {
  it('reads a list of users, one or many', () => {
    const one = parseFinesseUsers(`<Users>${agentXml('<loginId>1</loginId><loginName>a</loginName>')}</Users>`);
    expect(one.map((u) => u.loginId)).toEqual(['1']);
    const many = parseFinesseUsers(`<Users>${SUPERVISOR_XML.replace(/<\?xml[^>]*\?>/, '')}${agentXml('<loginId>1002</loginId>')}</Users>`);
    expect(many.map((u) => [u.loginId, u.roles, u.supervisedTeams.length])).toEqual([['1001001', ['Agent', 'Supervisor'], 2], ['1002', [], 0]]);
  });

  it('reads an empty list', () => {
    expect(parseFinesseUsers('<Users/>')).toEqual([]);
    expect(parseFinesseUsers('<Users></Users>')).toEqual([]);
  });

  it('skips an unusable entry and reports it, keeping the others', () => {
    const skipped: [number, string][] = [];
    const users = parseFinesseUsers(`<Users><User><loginName>x</loginName></User>${agentXml('<loginId>2</loginId>')}</Users>`, (i, reason) => skipped.push([i, reason]));
    expect(users.map((u) => u.loginId)).toEqual(['2']);
    expect(skipped).toEqual([[0, '<User> #1 has no loginId']]);
  });

  it('refuses a malformed or foreign document whole', () => {
    expect(refusal(() => parseFinesseUsers('<Users><User><loginId>1</loginId></Users>'))).toMatch(/^malformed XML/);
    expect(refusal(() => parseFinesseUsers('<User><loginId>1</loginId></User>'))).toBe('expected a <Users> document, got <User>');
  });
});

describe('parseFinesseTeams', () => {
  it('reads one or many teams, without duplicates or id-less entries', () => {
    expect(parseFinesseTeams('<Teams><Team><uri>/finesse/api/Team/1</uri><id>1</id><name>Sales</name></Team></Teams>')).toEqual([{ id: '1', name: 'Sales' }]);
    expect(parseFinesseTeams('<Teams><Team><id>1</id><name>Sales</name></Team><Team><id>2</id><name>Support</name></Team><Team><id>1</id><name>Again</name></Team><Team><name>x</name></Team></Teams>'))
      .toEqual([{ id: '1', name: 'Sales' }, { id: '2', name: 'Support' }]);
    expect(parseFinesseTeams('<Teams/>')).toEqual([]);
  });

  it('refuses DOCTYPE and malformed documents', () => {
    expect(refusal(() => parseFinesseTeams('<!DOCTYPE Teams><Teams/>'))).toMatch(/DOCTYPE/);
    expect(refusal(() => parseFinesseTeams('<Teams><Team>'))).toMatch(/^malformed XML/);
  });
});
