import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { GossipMessageSchema, type SignedAnnouncement } from '../proto/gen/mesh_pb.js';
import { decodeFrames, encodeFrame, exchangeFrame, FrameError } from './framing.ts';
import type { ByteStream } from './types.ts';

/** More announcements than this in one message is treated as abuse, not a mesh. */
export const MAX_ANNOUNCEMENTS_PER_MESSAGE = 4096;

export class GossipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GossipError';
  }
}

export function encodeGossipMessage(announcements: SignedAnnouncement[]): Uint8Array {
  return toBinary(GossipMessageSchema, create(GossipMessageSchema, { announcements }));
}

export function decodeGossipMessage(bytes: Uint8Array): SignedAnnouncement[] {
  let announcements: SignedAnnouncement[];
  try {
    announcements = fromBinary(GossipMessageSchema, bytes).announcements;
  } catch {
    throw new GossipError('gossip message does not decode');
  }
  if (announcements.length > MAX_ANNOUNCEMENTS_PER_MESSAGE) {
    throw new GossipError(`gossip message carries ${announcements.length} announcements`);
  }
  return announcements;
}

/** Initiator side of one anti-entropy exchange: send ours, read theirs. */
export async function requestGossip(
  stream: ByteStream,
  ours: SignedAnnouncement[],
): Promise<SignedAnnouncement[]> {
  const reply = await exchangeFrame(stream, encodeGossipMessage(ours));
  return decodeGossipMessage(reply);
}

/**
 * Responder side: read the initiator's message, let `respond` process it and pick
 * what to send back, then reply and half-close.
 */
export async function respondGossip(
  stream: ByteStream,
  respond: (theirs: SignedAnnouncement[]) => Promise<SignedAnnouncement[]>,
): Promise<void> {
  let request: Uint8Array | undefined;
  for await (const frame of decodeFrames(stream.source)) {
    request = frame;
    break;
  }
  if (request === undefined) throw new FrameError('gossip stream closed before a message');
  const reply = await respond(decodeGossipMessage(request));
  await stream.write(encodeFrame(encodeGossipMessage(reply)));
  await stream.closeWrite();
}
