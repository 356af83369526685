/**
 * Sets `key` as the newest entry of `map` (insertion order is age), first dropping the oldest
 * entry when the map already holds `max`: a table a peer can grow stays at `max` entries.
 */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}
