/**
 * Who may hold a connection to the HTTP port. A liveness probe that cannot get in restarts the pod,
 * so a full house must never turn a newcomer away while someone merely sits on a connection. Over
 * a limit, the connections that have sat idle longest (no request in progress: never sent one,
 * trickling headers, or kept alive after one) are closed, first among the peer's own that is over
 * its share, then among those of the peer holding the most. That happens at once for connections
 * older than EVICT_AFTER_MS; a newer one gets that long to send its request, as a prober does at
 * once, and is looked at again then. A burst faster than that (a thousand connects in a few ms)
 * would fill the house with newcomers, and Node's own cap refuses the next ones unseen, a prober
 * among them: past HARD_CONNECTION_LIMIT the idle longest go at once, however new, once the
 * event loop has read what had arrived on them by its next pass (a prober writes its request as it
 * connects, so it is in a request by then). Short header, request and keep-alive timeouts close
 * what sits idle anyway.
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { Cancel, Clock } from "../core/clock.js";

/** Probes and scrapers need a handful; more at once is someone hammering the port. */
export const MAX_CONNECTIONS = 64;
/** One address's share: a prober elsewhere never loses its place to one busy peer. */
export const MAX_CONNECTIONS_PER_PEER = 16;
/** Past this many, idle connections go at once, within their grace too, after their first turn. */
export const HARD_CONNECTION_LIMIT = MAX_CONNECTIONS * 4;
/**
 * Node's own cap, past which it closes new connections unseen: a bound on file descriptors, reached
 * only when more than HARD_CONNECTION_LIMIT newcomers arrive within two passes of the event loop,
 * or are in a request.
 */
export const NODE_CONNECTION_CAP = HARD_CONNECTION_LIMIT * 2;
/** How long a new connection may sit without a request before it may be closed: time for a prober's request to arrive. */
export const EVICT_AFTER_MS = 20;

/** Timeouts for `createServer`: a probe sends its request at once and is answered at once. */
export const HTTP_TIMEOUTS = {
  headersTimeout: 2_000,
  requestTimeout: 5_000,
  keepAliveTimeout: 2_000,
  // How often Node looks for connections past those timeouts (its default, 30 s, let idle sockets sit 20-35 s).
  connectionsCheckingInterval: 500,
} as const;

export function limitConnections(server: Server, clock: Clock, max = MAX_CONNECTIONS, perPeer = MAX_CONNECTIONS_PER_PEER): void {
  // Sets keep insertion order: the first idle one found is the one idle longest.
  const all = new Set<Socket>();
  const byPeer = new Map<string, Set<Socket>>();
  const busy = new Set<Socket>();
  /** What each connection came with: its peer, when, and in which turn of the event loop (below). */
  const accepted = new WeakMap<Socket, { peer: string; at: number; turn: number }>();
  // Turns of the event loop, counted while connections are new: a connection accepted in one turn has
  // what it sent read in the next one's poll, so it is not closed as idle before that turn ends.
  let turn = 0;
  let lastAccepted = -2;
  let ticking = false;
  const unread = (s: Socket): boolean => turn - (accepted.get(s)?.turn ?? -2) < 2;
  const tick = (): void => {
    turn++;
    ticking = turn - lastAccepted < 2;
    if (ticking) setImmediate(tick);
    // A burst that went past the hard limit is brought back under it as soon as it has been read.
    if (all.size > HARD_CONNECTION_LIMIT) evict();
  };
  let pass: Cancel | null = null;
  const forget = (socket: Socket): void => {
    const peer = accepted.get(socket)?.peer ?? "";
    all.delete(socket);
    busy.delete(socket);
    const mine = byPeer.get(peer);
    mine?.delete(socket);
    if (mine?.size === 0) byPeer.delete(peer);
  };
  /** Closes the longest-idle connection among `sockets`; false if all of them are busy, unread or (with `grace`) younger than EVICT_AFTER_MS. */
  let now = 0;
  const evictFrom = (sockets: Iterable<Socket>, grace = true): boolean => {
    for (const s of sockets) {
      if (busy.has(s) || unread(s) || (grace && now - (accepted.get(s)?.at ?? 0) < EVICT_AFTER_MS)) continue;
      forget(s);
      s.destroy();
      return true;
    }
    return false;
  };
  const mostCrowded = (): Set<Socket> => {
    let crowded = new Set<Socket>();
    for (const sockets of byPeer.values()) if (sockets.size > crowded.size) crowded = sockets;
    return crowded;
  };
  const overLimit = (): boolean => all.size > max || [...byPeer.values()].some((sockets) => sockets.size > perPeer);
  /** Down to the limits, as far as idle connections old enough allow; what is left is looked at again. */
  const evict = (): void => {
    now = clock.now();
    for (const sockets of [...byPeer.values()]) while (sockets.size > perPeer && evictFrom(sockets));
    while (all.size > max && (evictFrom(mostCrowded()) || evictFrom(all)));
    while (all.size > HARD_CONNECTION_LIMIT && (evictFrom(mostCrowded(), false) || evictFrom(all, false)));
    if (pass === null && overLimit()) {
      pass = clock.after(EVICT_AFTER_MS, () => {
        pass = null;
        evict();
      });
    }
  };
  server.maxConnections = NODE_CONNECTION_CAP;
  server.on("connection", (socket: Socket) => {
    const peer = socket.remoteAddress ?? "";
    accepted.set(socket, { peer, at: clock.now(), turn });
    let mine = byPeer.get(peer);
    if (!mine) byPeer.set(peer, (mine = new Set()));
    all.add(socket);
    mine.add(socket);
    socket.once("close", () => forget(socket));
    lastAccepted = turn;
    if (!ticking) {
      ticking = true;
      setImmediate(tick);
    }
    if (overLimit()) evict();
  });
  server.on("request", (req, res) => {
    const { socket } = req;
    busy.add(socket);
    res.once("close", () => busy.delete(socket));
  });
  server.on("close", () => pass?.());
}
