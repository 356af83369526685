/** The mesh-llm version announced to peers (field 4). */
export const VERSION = '0.1.0';
