import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import type { NodeMetrics } from './node-metrics.ts';

/**
 * libp2p's own metrics (connections, streams, bytes per protocol: gossip traffic is
 * libp2p_data_transfer_bytes_total{protocol="/mesh-llm/gossip/1.0.0 sent"}) plus the process
 * defaults, registered on this node's registry. Pass the result as libp2p's `metrics` option.
 */
export function libp2pMetrics(metrics: NodeMetrics): ReturnType<typeof prometheusMetrics> {
  return prometheusMetrics({ registry: metrics.registry, collectDefaultMetrics: true });
}
