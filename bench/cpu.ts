// CPU time per request, read from /proc: the server process (all its threads), every local
// PostgreSQL process, and the machine's stolen time. Throughput on a shared 2-core VM swings with
// the hypervisor's steal; CPU milliseconds per request do not, so they show what a change saved.
// Off Linux (or with a remote database) the numbers are null rather than wrong.
import fs from 'node:fs';
import os from 'node:os';

/** Clock ticks per second for /proc times (USER_HZ); 100 on every Linux this runs on. */
const TICKS_PER_SECOND = 100;

type ProcessTimes = { server: number; database: number };
type MachineTimes = { busy: number; steal: number; total: number };

export type CpuSample = { at: number; processes: ProcessTimes | null; machine: MachineTimes | null };

export type CpuUse = {
  /** CPU ms per request in the server process and in PostgreSQL's processes. */
  serverMsPerRequest: number | null;
  databaseMsPerRequest: number | null;
  /** Share of the machine's CPU time taken by the hypervisor (steal) and left idle, in %. */
  stealPercent: number | null;
  idlePercent: number | null;
};

/** utime + stime of one process in ticks (field 14 and 15 of /proc/<pid>/stat). */
function processTicks(pid: number | string): number | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is parenthesised and may hold spaces; fields count from after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function postgresTicks(): number {
  let total = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
    } catch {
      continue; // exited between readdir and read
    }
    if (comm === 'postgres') total += processTicks(entry) ?? 0;
  }
  return total;
}

/** The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal. */
function machineTimes(): MachineTimes | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
    const busy = user! + nice! + system! + irq! + softirq!;
    return { busy, steal: steal!, total: busy + idle! + iowait! + steal! };
  } catch {
    return null;
  }
}

export function sampleCpu(serverPid: number): CpuSample {
  if (os.platform() !== 'linux') return { at: performance.now(), processes: null, machine: null };
  const server = processTicks(serverPid);
  return {
    at: performance.now(),
    processes: server === null ? null : { server, database: postgresTicks() },
    machine: machineTimes(),
  };
}

const round2 = (value: number): number => Math.round(value * 100) / 100;

/** CPU used between two samples, per request served in between. */
export function cpuUse(before: CpuSample, after: CpuSample, requests: number): CpuUse {
  const perRequest = (ticks: number): number | null => requests > 0 ? round2((ticks * 1000) / TICKS_PER_SECOND / requests) : null;
  const p = before.processes && after.processes ? { server: after.processes.server - before.processes.server, database: after.processes.database - before.processes.database } : null;
  const m = before.machine && after.machine
    ? { busy: after.machine.busy - before.machine.busy, steal: after.machine.steal - before.machine.steal, total: after.machine.total - before.machine.total }
    : null;
  return {
    serverMsPerRequest: p ? perRequest(p.server) : null,
    // A database elsewhere shows no local postgres processes: say nothing rather than 0.
    databaseMsPerRequest: p && p.database > 0 ? perRequest(p.database) : null,
    stealPercent: m && m.total > 0 ? round2((100 * m.steal) / m.total) : null,
    idlePercent: m && m.total > 0 ? round2((100 * (m.total - m.busy - m.steal)) / m.total) : null,
  };
}
