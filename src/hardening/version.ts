/** Bumped whenever what hardening does or how posture is measured changes. */
export const HARDENING_VERSION = '1';
