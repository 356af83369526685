import { ConfigError } from '../../errors.ts';
import { DEFAULT_CONSOLE_PORT } from '../../node/config.ts';
import { parseFlags, portFlag } from '../args.ts';
import { consoleCredentialFor } from './status.ts';

const FLAGS = {
  console: { type: 'string' },
  'data-dir': { type: 'string' },
  expires: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30m`, `24h`, `7d` → milliseconds. */
export function durationFlag(value: string, flag: string): number {
  const match = /^(\d{1,6})([smhd])$/.exec(value.trim());
  if (!match)
    throw new ConfigError(`${flag} must be a number and a unit (s, m, h, d), e.g. 24h; got '${value}'`);
  const ms = Number(match[1]) * UNITS[match[2]!]!;
  if (ms <= 0) throw new ConfigError(`${flag} must be more than zero`);
  return ms;
}

/** POSTs to the running node's console with the local credential; the JSON answer or a readable error. */
async function consolePost(
  values: { console?: string; 'data-dir'?: string },
  path: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const port = portFlag(values.console, '--console', DEFAULT_CONSOLE_PORT);
  const credential = await consoleCredentialFor(values['data-dir']);
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${credential}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch {
    throw new ConfigError(`no node is answering on console port ${port} — start one with 'mesh-llm serve'`);
  }
  const answer = (await response.json().catch(() => ({}))) as Record<string, unknown> & {
    error?: { message?: string };
  };
  if (!response.ok) throw new ConfigError(answer.error?.message ?? `the console answered ${response.status}`);
  return answer;
}

/** `mesh-llm invite [--expires 24h]`: a token for --join / --join-file, from the running node. */
export async function runInvite(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  if (values.help || positionals.length > 0) {
    process.stdout.write(
      'mesh-llm invite [--expires 24h] [--console PORT] [--data-dir DIR]\n' +
        '  prints a token others pass to --join-file (or --join); --expires needs the mesh owner node\n',
    );
    return values.help ? 0 : 2;
  }
  const expiresInMs = values.expires === undefined ? undefined : durationFlag(values.expires, '--expires');
  const { token } = await consolePost(values, '/api/invite', { expiresInMs });
  if (typeof token !== 'string') throw new ConfigError('the node answered without a token');
  process.stdout.write(`${token}\n`);
  return 0;
}

/** `mesh-llm revoke PEER`: the mesh owner node revokes a member, for good, mesh-wide. */
export async function runRevoke(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  const [peer] = positionals;
  if (values.help || peer === undefined || positionals.length > 1) {
    process.stdout.write(
      'mesh-llm revoke PEER_ID [--console PORT] [--data-dir DIR]   (on the mesh owner node)\n',
    );
    return values.help ? 0 : 2;
  }
  if (!/^[0-9a-f]{64}$/.test(peer)) throw new ConfigError('PEER_ID must be the 64-character hex endpoint id');
  await consolePost(values, '/api/revoke', { peer });
  process.stdout.write(`revoked ${peer.slice(0, 12)}: every node of the mesh refuses it from now on\n`);
  return 0;
}
