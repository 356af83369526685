/**
 * The README's dependency arrows as dependency-cruiser rules:
 * `cli → node → {api, routing, mesh, backends} → {openai, crypto, attestation, hardening, proto, http}`
 * with encoding, errors, log and files at the bottom. A folder may use its own layer and any layer below,
 * never one above; nothing may form a cycle; crypto and attestation stay pure. Every entry of src/
 * must be placed here: a new top-level folder fails the check until it is given a layer.
 * The web console's front end (console/, browser code bundled by scripts/build-console.ts) lives
 * outside src/ and imports nothing from it; it talks to the node over HTTP only.
 */

import type { IConfiguration, IForbiddenRuleType } from 'dependency-cruiser';

/** Lowest layer first. A name is a folder of src/ or a file src/<name>.ts. */
export const LAYERS: string[][] = [
  ['encoding', 'errors', 'log', 'files'],
  ['openai', 'crypto', 'attestation', 'hardening', 'proto', 'http', 'metrics'],
  ['api', 'routing', 'mesh', 'backends'],
  ['node'],
  ['cli'],
];

/** Folders that must stay pure: no network stack, no HTTP, no libp2p. */
export const PURE = ['crypto', 'attestation'];

const IMPURE_MODULES = [
  '^(node:)?(http|https|http2|net|dgram|tls)$',
  '^(libp2p|@libp2p/|@chainsafe/|@multiformats/)',
];

/** A module path pattern for the named entries of src/ (folders or top-level files). */
function entries(names: string[]): string {
  return `^src/(${names.join('|')})(/|\\.[cm]?[jt]s$)`;
}

function layerRules(): IForbiddenRuleType[] {
  return LAYERS.flatMap((layer, index) => {
    const above = LAYERS.slice(index + 1).flat();
    if (above.length === 0) return [];
    return [
      {
        name: `layer-${layer.join('-')}`,
        comment: `${layer.join(', ')} must not import a higher layer (${above.join(', ')})`,
        severity: 'error' as const,
        from: { path: entries(layer) },
        to: { path: entries(above) },
      },
    ];
  });
}

const rules = {
  forbidden: [
    ...layerRules(),
    {
      name: 'no-circular',
      comment: 'dependencies point one way: no import cycles',
      severity: 'error' as const,
      from: {},
      to: { circular: true },
    },
    {
      name: 'pure-crypto-attestation',
      comment: `${PURE.join(' and ')} stay pure: no HTTP, no libp2p, no sockets`,
      severity: 'error' as const,
      from: { path: entries(PURE) },
      to: { path: [...IMPURE_MODULES, entries(['http'])] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
  },
} satisfies IConfiguration;

export default rules;
