import { measureCode } from '../../hardening/measure.ts';
import { parseFlags, rejectPositionals } from '../args.ts';

const HELP = `mesh-llm measure [--json]

Prints the binary hash this installation announces (SHA-256 over the node executable, the
application and the native addons that can see plaintext) and every part it covers, so an
operator can publish it for an attestation policy's allowed_binary_hashes. Model weights are
not part of it.`;

const FLAGS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function runMeasure(
  args: string[],
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  if (values.help) {
    out.write(`${HELP}\n`);
    return 0;
  }
  rejectPositionals(positionals);
  const m = await measureCode();
  if (values.json) {
    out.write(`${JSON.stringify(m, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `binary_hash ${m.binaryHash}`,
    `mode        ${m.mode}`,
    '',
    'parts (role, sha256, bytes, path):',
  ];
  for (const p of m.parts)
    lines.push(`  ${p.role.padEnd(15)} ${p.sha256} ${String(p.bytes).padStart(10)} ${p.path}`);
  out.write(`${lines.join('\n')}\n`);
  return 0;
}
