import { sql, type Kysely } from 'kysely';

/**
 * Runs a DDL script one statement at a time: PGlite's query path (extended protocol) takes a
 * single statement, so a migration written as one readable script is split on statement ends.
 * Scripts must not put ';' at a line end inside a string literal.
 */
export async function executeScript(db: Kysely<unknown>, script: string): Promise<void> {
  const statements = script.split(/;\s*(?:\n|$)/).map((s) => s.trim()).filter((s) => s.replace(/--.*$/gm, '').trim() !== '');
  for (const statement of statements) await sql.raw(statement).execute(db);
}
