import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { createConsoleRoutes } from '../api/console-routes.ts';
import { type ListeningServer, startHttpServer } from '../api/http-server.ts';
import { withApiIngress } from '../api/ingress-guard.ts';
import { createOpenAiRoutes } from '../api/openai-routes.ts';
import { observeDispatch } from '../api/request-metrics.ts';
import { ReplayGuard } from '../crypto/envelope.ts';
import { InferenceKeyring } from '../crypto/inference-keys.ts';
import { PreparedExchanges } from '../crypto/prepared-exchanges.ts';
import { ConfigError, describeError } from '../errors.ts';
import type { SecurityPostureFacts } from '../hardening/types.ts';
import type { Logger } from '../log.ts';
import { loadOrCreateIdentity } from '../mesh/identity.ts';
import { createLibp2pMesh, LAN_MESH_ID } from '../mesh/libp2p-mesh.ts';
import type { LocalAnnouncementFields, MeshService, StreamTapEvent } from '../mesh/types.ts';
import { PROTOCOL_HTTP } from '../mesh/types.ts';
import { libp2pMetrics } from '../metrics/libp2p.ts';
import { NodeMetrics } from '../metrics/node-metrics.ts';
import { ModelCapacitySchema, NodeRole } from '../proto/gen/mesh_pb.js';
import { CapacityQueue } from '../routing/capacity-queue.ts';
import { createInboundHttpHandler } from '../routing/inbound-http.ts';
import { LoadPublisher, LoadSubscriptions, PROTOCOL_LOAD } from '../routing/load-reports.ts';
import { RemoteTransport } from '../routing/remote-transport.ts';
import { type HostGate, Router } from '../routing/router.ts';
import type { AttestationService } from './attestation-service.ts';
import { startAttestationService } from './attestation-service.ts';
import type { NodeConfig } from './config.ts';
import { ensureConsoleCredential } from './console-credential.ts';
import { createHostSecurity, requireAttestationGate, requireEncryptionGate } from './host-security.ts';
import { configuredModels, startHosting } from './hosting.ts';
import { buildStatusReport, peerSamples, type StatusReport } from './status.ts';
import { VERSION } from './version.ts';

export interface MeshNodeDeps {
  logger: Logger;
  /** The measured posture of this process (hardening runs before the node is built). */
  posture: SecurityPostureFacts;
  /** Test hook: observe every app-stream byte (used to prove middle nodes see ciphertext). */
  streamTap?: (event: StreamTapEvent) => void;
}

export interface MeshNode {
  readonly config: NodeConfig;
  readonly endpointId: string;
  readonly mesh: MeshService;
  readonly router: Router;
  readonly apiUrl: string;
  readonly consoleUrl: string | undefined;
  readonly metrics: NodeMetrics;
  status(): StatusReport;
  stop(): Promise<void>;
}

/**
 * Composes one node: backends, inference keys, attestation, the libp2p mesh, the router, the
 * inbound host handler, and the API + console servers. Everything it needs is passed in, so
 * tests assemble several nodes in one process.
 */
export async function startMeshNode(config: NodeConfig, deps: MeshNodeDeps): Promise<MeshNode> {
  const logger = deps.logger;
  if (config.client && (configuredModels(config).length > 0 || config.backend)) {
    throw new ConfigError('--client runs no backend: drop --model/--backend or drop --client');
  }
  const apiOnLoopback = isLoopbackAddress(config.apiHost);
  if (!apiOnLoopback && config.apiKeys.length === 0 && !config.insecureNoAuth) {
    throw new ConfigError(
      '--listen-all opens the API to the network: give --api-key KEY or --api-keys-file FILE (or --insecure-no-auth to run it open)',
    );
  }
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const cleanup: (() => Promise<void> | void)[] = [];
  const metrics = new NodeMetrics();
  try {
    const hosting = await startHosting(config, logger);
    const backends = hosting.backends;
    cleanup.push(() => hosting.stop());

    const keyring = config.e2e ? new InferenceKeyring({ rotationMs: config.keyRotationMs }) : undefined;
    if (keyring) {
      keyring.start();
      cleanup.push(() => keyring.stop());
    }

    const posture: SecurityPostureFacts = {
      ...deps.posture,
      plaintextBoundary: backends[0]?.plaintextBoundary ?? 'none',
    };
    const identity = await loadOrCreateIdentity(config.dataDir);
    const role = backends.length > 0 ? NodeRole.HOST : config.client ? NodeRole.CLIENT : NodeRole.WORKER;
    const attestation: AttestationService = await startAttestationService({
      config,
      endpointId: identity.endpointId,
      posture,
      hosting: backends.length > 0,
      inferenceKey: () => keyring?.current().publicKeyBase64,
      logger: logger.child({ component: 'attestation' }),
      onFailure: (reason) => metrics.attestationFailures.inc({ reason }),
    });
    cleanup.push(() => attestation.stop());

    const announcement = (): LocalAnnouncementFields => ({
      role,
      name: config.name,
      version: VERSION,
      ...hosting.announcementFields(),
      // Pooling: how many requests each model runs at once (live load goes on PROTOCOL_LOAD).
      modelCapacity: backends.flatMap((b) =>
        b
          .models()
          .filter((m) => m.slots !== undefined)
          .map((m) => create(ModelCapacitySchema, { modelName: m.name, slots: m.slots })),
      ),
      inferencePublicKey: keyring?.current().publicKeyBase64,
      securityPosture: attestation.postureProto(),
      hardwareAttestationBlob: attestation.statementBlob(),
    });

    const meshIdFile = join(config.dataDir, 'mesh-id');
    const savedMeshId = (await readFile(meshIdFile, 'utf8').catch(() => '')).trim() || undefined;
    const mesh = await createLibp2pMesh({
      privateKey: identity.privateKey,
      // A fresh --mdns node without a token joins the LAN's open mesh (said in --help).
      meshId: savedMeshId ?? (config.mdns && config.join.length === 0 ? LAN_MESH_ID : undefined),
      dataDir: config.dataDir,
      listenHost: config.meshHost,
      listenPort: config.meshPort,
      relay: config.relay,
      reachableOnlyViaRelay: config.reachableOnlyViaRelay,
      heartbeatMs: config.heartbeatMs,
      mdns: config.mdns,
      announce: config.announce,
      quic: config.quic,
      upnp: config.upnp,
      announcement: announcement(),
      version: VERSION,
      logger: logger.child({ component: 'mesh' }),
      streamTap: deps.streamTap,
      metrics: libp2pMetrics(metrics),
    });
    cleanup.push(() => mesh.stop());
    attestation.attach(mesh);

    const reannounce = () =>
      mesh.updateAnnouncement(announcement()).catch((error) => {
        logger.warn({ err: describeError(error) }, 'could not re-announce');
      });
    keyring?.onRotate(() => {
      void attestation.refresh().then(reannounce);
    });
    attestation.onStatementRefreshed(reannounce);
    hosting.onChange(reannounce);

    // Senders prepare the next request's key exchange per host while waiting for an answer.
    const exchanges = config.e2e ? new PreparedExchanges() : undefined;
    if (exchanges) cleanup.push(() => exchanges.clear());
    const gates: HostGate[] = [];
    if (config.requireEncryption) gates.push(requireEncryptionGate);
    if (config.requireAttestedHosts) gates.push(requireAttestationGate(attestation.trust));
    const router = new Router({
      backends,
      mesh,
      transport: new RemoteTransport({
        mesh,
        exchanges,
        bounds: config.answerBounds,
        onE2eFailure: (reason) => metrics.e2eFailures.inc({ reason, side: 'client' }),
      }),
      security: createHostSecurity(attestation.trust, {
        e2e: config.e2e,
        attestationPolicy: config.requireAttestedHosts,
      }),
      gates,
      logger: logger.child({ component: 'router' }),
      queue: new CapacityQueue({ maxWaiting: config.maxQueued, timeoutMs: config.queueTimeoutMs }),
    });
    cleanup.push(() => router.queue.close());

    // Pooling: hosts stream their load to whoever follows them; this node follows every host.
    const loadLog = logger.child({ component: 'load' });
    if (backends.length > 0) {
      const publisher = new LoadPublisher({
        snapshot: () => router.localLoad.snapshot(),
        onChange: (listener) => router.localLoad.onChange(listener),
        logger: loadLog,
      });
      publisher.start();
      cleanup.push(() => publisher.stop());
      mesh.handle(PROTOCOL_LOAD, (stream) => publisher.serve(stream));
    }
    const subscriptions = new LoadSubscriptions({ mesh, board: router.load, logger: loadLog });
    // A host that left keeps no conversations (they would only be skipped until they expire).
    cleanup.push(
      mesh.onPeerEvent((event) => {
        if (event.type === 'removed') router.affinity.forgetHost(event.endpointId);
      }),
    );

    mesh.handle(
      PROTOCOL_HTTP,
      createInboundHttpHandler({
        router,
        e2e: keyring ? { keyring, replayGuard: new ReplayGuard() } : undefined,
        acceptPlaintext: !config.requireEncryption && !config.requireAttestedHosts,
        maxRequestBytes: config.maxBodyBytes,
        limits: config.inboundLimits,
        logger: logger.child({ component: 'host' }),
        onE2eFailure: (reason) => metrics.e2eFailures.inc({ reason, side: 'host' }),
      }),
    );
    await mesh.start();
    subscriptions.start();
    cleanup.push(() => subscriptions.stop());
    for (const token of config.join) await mesh.join(token);
    // Remember the mesh (created here or adopted from a token) so a restart stays in it.
    await writeFile(meshIdFile, `${mesh.meshId}\n`, { mode: 0o600 });

    const openAi = createOpenAiRoutes(observeDispatch(router, metrics));
    const api: ListeningServer = await startHttpServer({
      host: config.apiHost,
      port: config.apiPort,
      maxBodyBytes: config.maxBodyBytes,
      handler: withApiIngress(openAi, { loopbackOnly: apiOnLoopback, apiKeys: config.apiKeys }),
      logger: logger.child({ component: 'api' }),
    });
    cleanup.push(() => api.close());

    const status = () =>
      buildStatusReport({
        config,
        mesh,
        router,
        attestation,
        posture,
        role,
        hosting: hosting.status,
      });
    metrics.setPeerSource(() => peerSamples(status()));
    let consoleServer: ListeningServer | undefined;
    if (config.consolePort !== undefined) {
      consoleServer = await startHttpServer({
        host: '127.0.0.1',
        port: config.consolePort,
        maxBodyBytes: 64 * 1024,
        handler: createConsoleRoutes({
          status,
          trust: attestation,
          membership: { invite: (options) => mesh.inviteToken(options), revoke: (peer) => mesh.revoke(peer) },
          credential: await ensureConsoleCredential(config.dataDir),
          metrics,
          // The playground is one more API client: the same keys apply.
          inference: withApiIngress(openAi, { loopbackOnly: true, apiKeys: config.apiKeys }),
        }),
        logger: logger.child({ component: 'console' }),
      });
      const server = consoleServer;
      cleanup.push(() => server.close());
    }

    const node: MeshNode = {
      config,
      endpointId: mesh.endpointId,
      mesh,
      router,
      apiUrl: `http://${hostForUrl(config.apiHost)}:${api.port}`,
      consoleUrl: consoleServer ? `http://127.0.0.1:${consoleServer.port}` : undefined,
      metrics,
      status,
      stop: () => runCleanup(cleanup),
    };
    logger.info(
      {
        id: mesh.endpointId.slice(0, 12),
        api: node.apiUrl,
        console: node.consoleUrl,
        models: backends.flatMap((b) => b.models().map((m) => m.name)),
        e2e: Boolean(keyring),
      },
      'node ready',
    );
    return node;
  } catch (error) {
    await runCleanup(cleanup);
    throw error;
  }
}

async function runCleanup(steps: (() => Promise<void> | void)[]): Promise<void> {
  for (const step of steps.splice(0).reverse()) {
    try {
      await step();
    } catch {
      // keep stopping the rest
    }
  }
}

function isLoopbackAddress(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function hostForUrl(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
}
