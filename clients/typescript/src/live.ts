// The live connection: ONE WebSocket to /api/v1/ws shared by every
// subscription (specs/asyncapi.yaml).
//
// LiveSocket owns the connection: it opens it lazily, reconnects with
// exponential backoff and full jitter, matches replies to requests by `id`,
// keeps the token fresh (`auth.refresh` before the JWT's `exp`, a fresh
// token after a 4001 close) and reports its state. What travels over it is
// organised in channels (LiveChannel): each channel names the server frame
// types it handles and is told when the socket opens (to subscribe again)
// and closes. BarsChannel is the bars channel; QuotesChannel (quotes.ts,
// quotes.subscribe / quotes.update) plugs in the same way.
//
// BarsChannel keeps one server subscription per topic, however many
// listeners share it, and fills gaps: after a reconnect (or when a
// subscription starts from a bar the chart already has) it fetches the bars
// since the last one delivered over REST and delivers them, oldest first,
// before the live updates that arrived meanwhile. A listener never gets a
// bar older than the last one it got (the last one itself may come again,
// updated). When the gap is more than one REST page (5000 bars) the
// listeners' onResetCache is called instead, so the chart reloads.

import { jwtExpiry, TokenManager, type TokenSource } from "./auth.js";
import type { BarUpdate, ClientMessage, ServerMessage } from "./generated/asyncapi.js";
import { canonicalResolution, resolutionSeconds, tickerOf } from "./resolution.js";
import type { Bar, RestClient } from "./rest.js";

/** The few members of a W3C WebSocket this module uses (browsers' WebSocket and the `ws` package both have them). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a WebSocket to `url`. */
export type WebSocketFactory = (url: string) => WebSocketLike | Promise<WebSocketLike>;

const OPEN = 1;

/** Close codes the server uses (specs/asyncapi.yaml), and 1006 for a connection lost without a close frame. */
export const CloseCode = {
  /** Connection lifespan ended (or a normal close). */
  Normal: 1000,
  /** Server shutting down. */
  GoingAway: 1001,
  ProtocolError: 1002,
  /** Could not decode / no matching type / could not validate payload. */
  UnsupportedData: 1003,
  /** No close frame: network failure, refused handshake, ... */
  Abnormal: 1006,
  InvalidPayload: 1007,
  /** Heartbeat timeout, client too slow, message not completed. */
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  /** The token expired without an auth.refresh. */
  TokenExpired: 4001,
} as const;

/** Codes that mean this client sent something the server could not take (a bug to report, not just a network event). */
const CLIENT_FAULT_CODES: ReadonlySet<number> = new Set([
  CloseCode.ProtocolError,
  CloseCode.UnsupportedData,
  CloseCode.InvalidPayload,
  CloseCode.MessageTooBig,
]);

/**
 * - `idle`: not started (nothing subscribed yet);
 * - `connecting`: a connection attempt is in progress;
 * - `open`: connected, subscriptions are (being) restored;
 * - `reconnecting`: the connection was lost or could not be made; the next attempt comes after `delayMs`;
 * - `closed`: closed by the application (close()).
 */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ConnectionEvent {
  state: ConnectionState;
  /** Connection attempts since the last stable connection (0 on the first). */
  attempt: number;
  /** With `reconnecting`: milliseconds until the next attempt. */
  delayMs?: number;
  /** With `reconnecting`: the close code that ended the connection (1006 when there was no close frame). */
  code?: number;
  /** With `reconnecting`: the close reason, or what failed. */
  reason?: string;
}

export interface ReconnectOptions {
  /** Upper bound of the first delay (ms); it doubles every failed attempt. Default 500. */
  initialDelayMs?: number;
  /** Cap of the delay (ms). Default 30000. */
  maxDelayMs?: number;
  /** A connection that stayed open this long (ms) resets the backoff. Default 5000. */
  stableAfterMs?: number;
  /** Random numbers in [0, 1) for the jitter (tests may fix it). Default Math.random. */
  random?: () => number;
}

export interface LiveSocketOptions {
  /** The WebSocket URL, e.g. `wss://md.example.com/api/v1/ws`. */
  url: string;
  /** With authentication: sent as `?access_token=` on the handshake, refreshed with `auth.refresh`. */
  token?: TokenSource | TokenManager | undefined;
  /** How to open a WebSocket; default the browser's WebSocket, or the `ws` package where there is none. */
  webSocket?: WebSocketFactory | undefined;
  reconnect?: ReconnectOptions | undefined;
  /** A request (subscribe, auth.refresh) not answered within this long (ms) fails. Default 10000. */
  requestTimeoutMs?: number | undefined;
  /** Refresh the token this long (ms) before its `exp` (at most half its remaining life). Default 60000. */
  refreshMarginMs?: number | undefined;
}

/** A kind of subscription carried by the shared socket (BarsChannel, QuotesChannel). */
export interface LiveChannel {
  /** The server frame types, other than replies to this client's requests, the channel handles. */
  readonly frameTypes: readonly ServerMessage["type"][];
  handle(frame: ServerMessage): void;
  /** The socket (re)opened: subscribe again. `reconnected` is false on the first connection. */
  opened(reconnected: boolean): void;
  /** The socket closed; unless closed by the application it reconnects and calls opened() again. */
  closed(): void;
}

/** Adds `id` to a client frame type. */
type Request<F extends ClientMessage> = Omit<F, "id">;

interface Pending {
  resolve(frame: ServerMessage): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** setTimeout takes at most a signed 32-bit delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

let nodeWebSocket: Promise<WebSocketFactory> | undefined;

/** The browser's WebSocket when there is one, else the `ws` package (Node.js 20 has no global WebSocket). */
export const defaultWebSocketFactory: WebSocketFactory = async (url) => {
  const Global = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (Global) return new Global(url);
  nodeWebSocket ??= import("ws").then(
    ({ default: NodeWebSocket }) =>
      (u: string) => new NodeWebSocket(u) as unknown as WebSocketLike,
  );
  return (await nodeWebSocket)(url);
};

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "object" && err !== null && "message" in err && typeof err.message === "string") {
    return err.message;
  }
  return String(err);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(describe(err));
}

/** The WebSocket URL of a server's base URL: http -> ws, https -> wss, `/api/v1/ws` appended to its path. */
export function websocketUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(`base URL must be http(s) or ws(s): ${baseUrl}`);
  }
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/api/v1/ws`;
  return url.toString();
}

/** The shared WebSocket: connection, reconnection, requests, token refresh. */
export class LiveSocket {
  readonly #url: string;
  readonly #tokens: TokenManager | undefined;
  readonly #factory: WebSocketFactory;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #stableAfterMs: number;
  readonly #random: () => number;
  readonly #requestTimeoutMs: number;
  readonly #refreshMarginMs: number;

  readonly #channels: LiveChannel[] = [];
  readonly #pending = new Map<string, Pending>();
  readonly #stateListeners = new Set<(event: ConnectionEvent) => void>();
  readonly #errorListeners = new Set<(error: Error) => void>();

  #ws: WebSocketLike | undefined;
  #event: ConnectionEvent = { state: "idle", attempt: 0 };
  /** Attempts since the last stable connection. */
  #attempt = 0;
  /** Bumped for every connection attempt and on close(): handlers of an older one do nothing. */
  #generation = 0;
  #everOpened = false;
  #openedAt = 0;
  #forceFreshToken = false;
  #nextId = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: LiveSocketOptions) {
    this.#url = options.url;
    const token = options.token;
    this.#tokens = token === undefined ? undefined : token instanceof TokenManager ? token : new TokenManager(token);
    this.#factory = options.webSocket ?? defaultWebSocketFactory;
    this.#initialDelayMs = options.reconnect?.initialDelayMs ?? 500;
    this.#maxDelayMs = options.reconnect?.maxDelayMs ?? 30_000;
    this.#stableAfterMs = options.reconnect?.stableAfterMs ?? 5_000;
    this.#random = options.reconnect?.random ?? Math.random;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#refreshMarginMs = options.refreshMarginMs ?? 60_000;
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.#event.state;
  }

  /** The last state event (with the attempt, delay and close code of a reconnect). */
  get lastEvent(): ConnectionEvent {
    return { ...this.#event };
  }

  get isOpen(): boolean {
    return this.#ws !== undefined && this.#ws.readyState === OPEN && this.#event.state === "open";
  }

  /** Calls `listener` on every state change; returns a function that stops it. */
  onStateChange(listener: (event: ConnectionEvent) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Calls `listener` with what went wrong (unparseable frames, refused subscriptions, failed refreshes, ...). */
  onError(listener: (error: Error) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  addChannel(channel: LiveChannel): void {
    this.#channels.push(channel);
    if (this.isOpen) channel.opened(this.#everOpened);
  }

  /** Starts connecting unless already connected or connecting (a closed socket starts again). */
  connect(): void {
    const state = this.#event.state;
    if (state === "idle" || state === "closed") {
      this.#attempt = 0;
      void this.#open();
    }
  }

  /** Closes the connection for good (until connect() is called again). */
  close(): void {
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#refreshTimer);
    const ws = this.#ws;
    this.#ws = undefined;
    this.#rejectPending(new Error("the live connection was closed"));
    if (ws) this.#detach(ws, true);
    const wasActive = this.#event.state !== "idle" && this.#event.state !== "closed";
    this.#setState({ state: "closed", attempt: 0 });
    if (wasActive) for (const channel of this.#channels) channel.closed();
  }

  /** Sends a frame without waiting for a reply; false when not connected. */
  send(frame: ClientMessage): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a fresh `id` and resolves with the reply carrying that id. */
  request<F extends ClientMessage>(frame: Request<F>): Promise<ServerMessage> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return Promise.reject(new Error(`${frame.type}: not connected`));
    const id = `c${++this.#nextId}`;
    return new Promise<ServerMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${frame.type}: no reply within ${this.#requestTimeoutMs} ms`));
      }, this.#requestTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  #setState(event: ConnectionEvent): void {
    this.#event = event;
    for (const listener of [...this.#stateListeners]) {
      try {
        listener({ ...event });
      } catch (err) {
        this.#emitError(err);
      }
    }
  }

  #emitError(err: unknown): void {
    const error = toError(err);
    for (const listener of [...this.#errorListeners]) {
      try {
        listener(error);
      } catch {
        // A failing error listener has nowhere to report to.
      }
    }
  }

  #rejectPending(error: Error): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(error);
    }
  }

  #detach(ws: WebSocketLike, close: boolean): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = () => {};
    if (close) {
      try {
        ws.close(CloseCode.Normal, "client closed");
      } catch {
        // Closing a socket still connecting may throw in some implementations.
      }
    }
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    const stale = () => generation !== this.#generation;
    this.#setState({ state: "connecting", attempt: this.#attempt });

    let token: string | undefined;
    let ws: WebSocketLike;
    try {
      let url = this.#url;
      if (this.#tokens) {
        token = await this.#tokens.get(this.#forceFreshToken);
        this.#forceFreshToken = false;
        const withToken = new URL(url);
        withToken.searchParams.set("access_token", token);
        url = withToken.toString();
      }
      if (stale()) return;
      ws = await this.#factory(url);
    } catch (err) {
      if (stale()) return;
      this.#emitError(new Error(`WebSocket: could not connect: ${describe(err)}`));
      this.#scheduleReconnect(undefined, describe(err), false);
      return;
    }
    if (stale()) {
      this.#detach(ws, true);
      return;
    }
    this.#ws = ws;
    let opened = false;
    let failure: string | undefined;

    ws.onopen = () => {
      if (stale()) return;
      opened = true;
      this.#openedAt = Date.now();
      const reconnected = this.#everOpened;
      this.#everOpened = true;
      this.#setState({ state: "open", attempt: this.#attempt });
      if (token !== undefined) this.#scheduleRefresh(generation, jwtExpiry(token));
      for (const channel of this.#channels) {
        try {
          channel.opened(reconnected);
        } catch (err) {
          this.#emitError(err);
        }
      }
    };
    ws.onmessage = (event) => {
      if (!stale()) this.#receive(event.data);
    };
    ws.onerror = (event) => {
      // The close event follows; keep what went wrong for it.
      failure = describe(event);
    };
    ws.onclose = (event) => {
      if (stale()) return;
      this.#generation++;
      this.#ws = undefined;
      this.#detach(ws, false);
      clearTimeout(this.#refreshTimer);
      this.#rejectPending(new Error(`the live connection closed (${event.code})`));
      for (const channel of this.#channels) {
        try {
          channel.closed();
        } catch (err) {
          this.#emitError(err);
        }
      }
      // A refused handshake (401 for a bad or expired token, in a browser
      // only visible as 1006) is retried with a fresh token.
      if (!opened && this.#tokens?.refreshable) this.#forceFreshToken = true;
      if (CLIENT_FAULT_CODES.has(event.code)) {
        this.#emitError(new Error(`WebSocket closed by the server with ${event.code}: ${event.reason}`));
      }
      const reason = event.reason || failure || (opened ? "connection lost" : "could not connect");
      this.#scheduleReconnect(event.code, reason, opened);
    };
  }

  #scheduleReconnect(code: number | undefined, reason: string, wasOpen: boolean): void {
    if (wasOpen && Date.now() - this.#openedAt >= this.#stableAfterMs) this.#attempt = 0;
    let delayMs: number;
    if (code === CloseCode.TokenExpired) {
      // The token ran out: come back at once with a fresh one (backing off if that keeps happening).
      if (this.#tokens?.refreshable) this.#forceFreshToken = true;
      delayMs = this.#attempt === 0 ? 0 : this.#backoff(this.#attempt);
    } else {
      delayMs = this.#backoff(this.#attempt);
    }
    this.#attempt++;
    const event: ConnectionEvent = { state: "reconnecting", attempt: this.#attempt, delayMs, reason };
    if (code !== undefined) event.code = code;
    this.#setState(event);
    const generation = this.#generation;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      if (generation === this.#generation) void this.#open();
    }, delayMs);
  }

  /** Full jitter: uniform in [0, min(cap, initial * 2^attempt)). */
  #backoff(attempt: number): number {
    const ceiling = Math.min(this.#maxDelayMs, this.#initialDelayMs * 2 ** Math.min(attempt, 30));
    return Math.floor(this.#random() * ceiling);
  }

  #receive(data: unknown): void {
    if (typeof data !== "string") {
      this.#emitError(new Error("WebSocket: the server sent a binary frame"));
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      this.#emitError(new Error(`WebSocket: the server sent a frame that is not JSON: ${data.slice(0, 200)}`));
      return;
    }
    if (
      typeof frame !== "object" ||
      frame === null ||
      !("type" in frame) ||
      typeof frame.type !== "string" ||
      !("payload" in frame) ||
      typeof frame.payload !== "object" ||
      frame.payload === null
    ) {
      this.#emitError(new Error(`WebSocket: unexpected frame: ${data.slice(0, 200)}`));
      return;
    }
    const message = frame as ServerMessage;
    if ("id" in message && typeof message.id === "string") {
      const pending = this.#pending.get(message.id);
      if (pending) {
        this.#pending.delete(message.id);
        clearTimeout(pending.timer);
        pending.resolve(message);
        return;
      }
    }
    for (const channel of this.#channels) {
      if (!channel.frameTypes.includes(message.type)) continue;
      try {
        channel.handle(message);
      } catch (err) {
        this.#emitError(err);
      }
    }
  }

  #scheduleRefresh(generation: number, exp: number | undefined): void {
    clearTimeout(this.#refreshTimer);
    if (exp === undefined || !this.#tokens?.refreshable) return;
    const remaining = exp * 1000 - Date.now();
    const margin = Math.min(this.#refreshMarginMs, Math.max(0, remaining / 2));
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, remaining - margin));
    this.#refreshTimer = setTimeout(() => void this.#refresh(generation, exp), delay);
  }

  /** Sends `auth.refresh` with a fresh token; on failure tries again while the current token lasts. */
  async #refresh(generation: number, currentExp: number): Promise<void> {
    const tokens = this.#tokens;
    if (!tokens || generation !== this.#generation) return;
    try {
      const token = await tokens.get(true);
      if (generation !== this.#generation) return;
      const reply = await this.request({ type: "auth.refresh", payload: { token } });
      if (generation !== this.#generation) return;
      if (reply.type !== "auth.refresh.response") throw new Error(`auth.refresh: unexpected reply ${reply.type}`);
      if (reply.payload.status !== "ok") throw new Error(`auth.refresh refused: ${reply.payload.message}`);
      this.#scheduleRefresh(generation, reply.payload.expires_at ?? jwtExpiry(token));
    } catch (err) {
      if (generation !== this.#generation) return;
      this.#emitError(err);
      // Try again while the current token is still good; once it is past,
      // the server closes with 4001 and the reconnect takes a fresh token.
      const remaining = currentExp * 1000 - Date.now();
      if (remaining > 1000) {
        const delay = Math.max(1000, Math.min(30_000, remaining / 2));
        clearTimeout(this.#refreshTimer);
        this.#refreshTimer = setTimeout(() => void this.#refresh(generation, currentExp), delay);
      }
    }
  }
}

/** What a bars subscriber is told. */
export interface BarsListener {
  /** A bar, never older than the previous one (the same bar comes again as it changes). */
  onBar(bar: Bar): void;
  /** Too much was missed to fill in (more than one REST page): reload the history. */
  onResetCache?(): void;
  /** The server refused the subscription (unknown symbol, unserved resolution, not entitled, over the limit). */
  onError?(message: string): void;
}

export interface BarsSubscribeOptions {
  /**
   * The newest bar the subscriber already has (e.g. the last one getBars
   * returned): the bars since it are fetched and delivered first, so the
   * stream continues it without a gap.
   */
  lastBar?: Bar | undefined;
}

type Phase = "waiting" | "subscribing" | "filling" | "live" | "failed";

interface Topic {
  /** `bars:TICKER:RESOLUTION` as computed here; the server's own topic is in serverTopic. */
  readonly key: string;
  readonly symbol: string;
  readonly resolution: string;
  serverTopic: string | undefined;
  readonly listeners: Set<BarsListener>;
  /** The last bar delivered (or the subscriber's own last bar). */
  last: Bar | undefined;
  phase: Phase;
  /** Live bars that arrived while subscribing or filling, delivered after the fill. */
  buffer: Bar[];
  /** Bumped whenever the topic is (re)subscribed or dropped: older async work stops. */
  epoch: number;
}

function barOf(update: BarUpdate | Bar): Bar {
  return {
    time: update.time,
    open: update.open,
    high: update.high,
    low: update.low,
    close: update.close,
    volume: update.volume,
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Live bars over a LiveSocket, with gap filling over REST. */
export class BarsChannel implements LiveChannel {
  readonly frameTypes = ["bars.update"] as const satisfies readonly ServerMessage["type"][];
  readonly #socket: LiveSocket;
  readonly #rest: RestClient;
  readonly #topics = new Map<string, Topic>();
  readonly #byServerTopic = new Map<string, Topic>();
  readonly #errorListeners = new Set<(error: Error) => void>();

  constructor(socket: LiveSocket, rest: RestClient) {
    this.#socket = socket;
    this.#rest = rest;
    socket.addChannel(this);
  }

  onError(listener: (error: Error) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /** Topics currently subscribed (for diagnostics). */
  get topics(): string[] {
    return [...this.#topics.keys()];
  }

  /**
   * Follows `symbol` at `resolution`; returns a function that stops it. The
   * socket connects on the first subscription.
   */
  subscribe(symbol: string, resolution: string, listener: BarsListener, options: BarsSubscribeOptions = {}): () => void {
    const canonical = canonicalResolution(resolution);
    const key = `bars:${tickerOf(symbol)}:${canonical}`;
    let topic = this.#topics.get(key);
    if (!topic) {
      topic = {
        key,
        symbol,
        resolution: canonical,
        serverTopic: undefined,
        listeners: new Set(),
        last: options.lastBar ? barOf(options.lastBar) : undefined,
        phase: "waiting",
        buffer: [],
        epoch: 0,
      };
      this.#topics.set(key, topic);
      this.#byServerTopic.set(key, topic);
      if (this.#socket.isOpen) void this.#subscribe(topic);
      else this.#socket.connect();
    }
    topic.listeners.add(listener);
    const subscribed = topic;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#remove(subscribed, listener);
    };
  }

  opened(): void {
    for (const topic of this.#topics.values()) void this.#subscribe(topic);
  }

  closed(): void {
    for (const topic of this.#topics.values()) {
      topic.epoch++;
      topic.phase = "waiting";
      topic.buffer = [];
    }
  }

  handle(frame: ServerMessage): void {
    if (frame.type !== "bars.update") return;
    const update = frame.payload;
    const topic =
      this.#byServerTopic.get(update.topic) ??
      this.#topics.get(`bars:${tickerOf(update.symbol)}:${canonicalResolution(update.resolution)}`);
    if (!topic) return;
    const bar = barOf(update);
    switch (topic.phase) {
      case "live":
        this.#deliver(topic, bar);
        return;
      case "subscribing":
      case "filling":
        topic.buffer.push(bar);
        return;
      default:
        return;
    }
  }

  #emitError(error: Error): void {
    for (const listener of [...this.#errorListeners]) {
      try {
        listener(error);
      } catch {
        // Nowhere to report to.
      }
    }
  }

  #current(topic: Topic, epoch: number): boolean {
    return topic.epoch === epoch && this.#topics.get(topic.key) === topic;
  }

  #remove(topic: Topic, listener: BarsListener): void {
    if (!topic.listeners.delete(listener) || topic.listeners.size > 0) return;
    if (this.#topics.get(topic.key) !== topic) return;
    this.#topics.delete(topic.key);
    this.#byServerTopic.delete(topic.key);
    if (topic.serverTopic !== undefined) this.#byServerTopic.delete(topic.serverTopic);
    const wasSubscribed = topic.phase !== "waiting" && topic.phase !== "failed";
    topic.epoch++;
    topic.phase = "waiting";
    topic.buffer = [];
    if (wasSubscribed) {
      this.#socket.send({
        type: "bars.unsubscribe",
        payload: { symbol: topic.symbol, resolution: topic.resolution },
      });
    }
  }

  async #subscribe(topic: Topic): Promise<void> {
    const epoch = ++topic.epoch;
    topic.phase = "subscribing";
    topic.buffer = [];
    let reply: ServerMessage;
    try {
      reply = await this.#socket.request({
        type: "bars.subscribe",
        payload: { symbol: topic.symbol, resolution: topic.resolution },
      });
    } catch (err) {
      if (!this.#current(topic, epoch)) return;
      // Still connected (the reply timed out): try again; otherwise the
      // reconnect subscribes again.
      this.#emitError(new Error(`bars.subscribe ${topic.key}: ${describe(err)}`));
      if (this.#socket.isOpen) {
        await sleep(1000);
        if (this.#current(topic, epoch) && this.#socket.isOpen) void this.#subscribe(topic);
      }
      return;
    }
    if (!this.#current(topic, epoch)) return;
    if (reply.type !== "bars.subscribe.response" || reply.payload.status !== "ok") {
      const message =
        reply.type === "bars.subscribe.response" ? reply.payload.message : `unexpected reply ${reply.type}`;
      topic.phase = "failed";
      topic.buffer = [];
      this.#emitError(new Error(`bars.subscribe ${topic.key}: ${message}`));
      for (const listener of [...topic.listeners]) listener.onError?.(message);
      return;
    }
    const serverTopic = reply.payload.topic;
    if (serverTopic && serverTopic !== topic.key) {
      topic.serverTopic = serverTopic;
      this.#byServerTopic.set(serverTopic, topic);
    }
    if (topic.last !== undefined) {
      topic.phase = "filling";
      await this.#fill(topic, epoch);
      if (!this.#current(topic, epoch)) return;
    }
    topic.phase = "live";
    const buffered = topic.buffer;
    topic.buffer = [];
    for (const bar of buffered) this.#deliver(topic, bar);
  }

  /**
   * Delivers the bars from the last delivered one up to now, from REST.
   * Runs after the server confirmed the subscription, so everything after
   * what REST returns is in the live buffer.
   */
  async #fill(topic: Topic, epoch: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const last = topic.last;
      if (last === undefined) return;
      try {
        const now = await this.#rest.getServerTime();
        if (!this.#current(topic, epoch)) return;
        const response = await this.#rest.getBars({
          symbol: topic.symbol,
          resolution: topic.resolution,
          from: Math.floor(last.time / 1000),
          // The bar containing the server's now starts at or before it.
          to: Math.max(now, Math.floor(last.time / 1000)) + resolutionSeconds(topic.resolution),
        });
        if (!this.#current(topic, epoch)) return;
        if (response.next_time !== undefined && response.next_time >= last.time) {
          // More than one page missed: older bars within the gap were left out.
          this.#reset(topic);
          return;
        }
        for (const bar of response.bars) this.#deliver(topic, bar);
        return;
      } catch (err) {
        if (!this.#current(topic, epoch)) return;
        this.#emitError(new Error(`filling the gap of ${topic.key}: ${describe(err)}`));
        await sleep(500 * 2 ** attempt);
        if (!this.#current(topic, epoch)) return;
      }
    }
    // Could not fill the gap: let the chart reload instead of showing a hole.
    this.#reset(topic);
  }

  #reset(topic: Topic): void {
    topic.last = undefined;
    for (const listener of [...topic.listeners]) {
      try {
        listener.onResetCache?.();
      } catch (err) {
        this.#emitError(toError(err));
      }
    }
  }

  #deliver(topic: Topic, bar: Bar): void {
    if (topic.last !== undefined && bar.time < topic.last.time) return;
    topic.last = barOf(bar);
    for (const listener of [...topic.listeners]) {
      try {
        listener.onBar(barOf(bar));
      } catch (err) {
        this.#emitError(toError(err));
      }
    }
  }
}
