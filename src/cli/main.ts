import { ConfigError, describeError } from '../errors.ts';
import type { CliContext } from './context.ts';

const USAGE = `mesh-llm — a peer-to-peer LLM inference mesh with private inference

Usage: mesh-llm <command> [flags]

Commands:
  serve            run a node (host with --model/--backend, or --client)
  demo             start a 3-node mesh on loopback and stream a chat through it
  status           show this node and its peers (from a running node's console)
  invite           print an invite token of a running node (--expires 24h on the mesh owner node)
  revoke PEER      the mesh owner revokes a member: refused by every node, for good
  posture          show this process's hardening and security posture
  measure          print the binary hash and what it covers
  models           list | pull SOURCE | rm ID: the downloaded model cache
  trust reset ID   forget the pinned attestation key of a peer (re-trust on next sight)

Run 'mesh-llm <command> --help' for the flags of a command.`;

type Command = (args: string[], context: CliContext) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.ts')).runServe,
  demo: async () => (await import('./commands/demo.ts')).runDemo,
  status: async () => (await import('./commands/status.ts')).runStatus,
  invite: async () => (await import('./commands/membership.ts')).runInvite,
  revoke: async () => (await import('./commands/membership.ts')).runRevoke,
  trust: async () => (await import('./commands/trust.ts')).runTrust,
  posture: async () => (await import('./commands/posture.ts')).runPosture,
  models: async () => (await import('./commands/models.ts')).runModels,
  measure: async () => {
    const { runMeasure } = await import('./commands/measure.ts');
    return (args) => runMeasure(args);
  },
};

/** Entry point; returns the exit code. User mistakes print one readable line, exit 2. */
export async function main(argv: string[], context: CliContext = {}): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`${(await import('../node/version.ts')).VERSION}\n`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`mesh-llm: unknown command '${name}'\n\n${USAGE}\n`);
    return 2;
  }
  try {
    return await (await load())(args, context);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`mesh-llm ${name}: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`mesh-llm ${name}: ${describeError(error)}\n`);
    return 1;
  }
}
