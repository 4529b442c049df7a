// Live quotes over the shared LiveSocket: the `quotes.subscribe` /
// `quotes.unsubscribe` / `quotes.update` frames of specs/asyncapi.yaml,
// which back TradingView's subscribeQuotes / unsubscribeQuotes.
//
// The server keeps one set of followed symbols per connection (each at the
// slow or the fast rate), not one per listener. QuotesChannel therefore
// counts listeners per symbol: the first listener of a symbol subscribes
// it, the last one to leave unsubscribes it, and a symbol is followed fast
// while any listener wants it fast. A listener that joins a symbol already
// followed gets its last quote at once (the server only sends a quote right
// away for a newly followed symbol).
//
// A quotes.subscribe request is all or nothing: one unknown symbol (or one
// the token is not entitled to, or going over the subscription limit)
// refuses the whole request. Symbols are sent in batches, and a refused
// batch is tried again one symbol at a time, so that only the symbols the
// server refuses fail: their listeners get an error quote
// (`{s: "error", n, errmsg}`) and onError is called with the server's
// message. After a reconnect everything is subscribed again (refused
// symbols included: the server may have changed).

import type { QuoteData, ServerMessage } from "./generated/asyncapi.js";
import type { LiveChannel, LiveSocket } from "./live.js";
import { tickerOf } from "./resolution.js";

export type { QuoteData, QuoteValues } from "./generated/asyncapi.js";

/** What a quotes subscriber is told. */
export interface QuotesListener {
  /** New quotes of followed symbols (`n` is the symbol's ticker; an error quote has `s: "error"` and `errmsg`). */
  onQuotes(quotes: QuoteData[]): void;
  /** The server refused a symbol (unknown, not entitled, over the subscription limit). */
  onError?(message: string): void;
}

/** One subscribe() call. */
interface Subscription {
  readonly listener: QuotesListener;
}

interface Entry {
  /** `tickerOf` the name first asked for: the key of #entries. */
  readonly key: string;
  /** The name as first asked for, sent to the server. */
  readonly name: string;
  /** The subscriptions following this symbol, and whether each wants it fast. */
  readonly subs: Map<Subscription, boolean>;
  /** The rate last requested on the current connection (undefined: not requested, or refused). */
  sent: boolean | undefined;
  /** Why the server refused the symbol on the current connection. */
  refused: string | undefined;
  /** The last quote received (given to listeners that join later). */
  last: QuoteData | undefined;
}

/** Names per quotes.subscribe request (keeps frames far below the server's 64 KiB limit). */
const BATCH = 100;

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function copy(quote: QuoteData): QuoteData {
  return { ...quote, v: { ...quote.v } };
}

/** Live quotes over a LiveSocket; see the module comment. */
export class QuotesChannel implements LiveChannel {
  readonly frameTypes = ["quotes.update"] as const satisfies readonly ServerMessage["type"][];
  readonly #socket: LiveSocket;
  readonly #entries = new Map<string, Entry>();
  /** The server's ticker for a name that `tickerOf` does not turn into it (learnt from replies). */
  readonly #aliases = new Map<string, string>();
  readonly #errorListeners = new Set<(error: Error) => void>();
  /** Bumped when the connection closes: replies to older requests are ignored. */
  #connection = 0;
  #flushQueued = false;

  constructor(socket: LiveSocket) {
    this.#socket = socket;
    socket.addChannel(this);
  }

  onError(listener: (error: Error) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /** The symbols currently followed (keys in ticker form), for diagnostics. */
  get symbols(): string[] {
    return [...this.#entries.keys()];
  }

  /**
   * Follows the quotes of `symbols`, and of `fastSymbols` at the fast rate;
   * returns a function that stops it. The socket connects on the first
   * subscription.
   */
  subscribe(symbols: readonly string[], fastSymbols: readonly string[], listener: QuotesListener): () => void {
    const sub: Subscription = { listener };
    const wanted = new Map<string, { name: string; fast: boolean }>();
    for (const name of symbols) wanted.set(tickerOf(name), { name, fast: wanted.get(tickerOf(name))?.fast ?? false });
    for (const name of fastSymbols) wanted.set(tickerOf(name), { name: wanted.get(tickerOf(name))?.name ?? name, fast: true });

    const known: Entry[] = [];
    for (const [key, { name, fast }] of wanted) {
      let entry = this.#entries.get(key);
      if (entry) {
        known.push(entry);
      } else {
        entry = { key, name, subs: new Map(), sent: undefined, refused: undefined, last: undefined };
        this.#entries.set(key, entry);
      }
      entry.subs.set(sub, fast);
    }
    // Symbols already followed: hand over what is known of them.
    if (known.length > 0) {
      queueMicrotask(() => {
        const current = known.filter((e) => e.subs.has(sub));
        const quotes = current.flatMap((e) => (e.last ? [copy(e.last)] : e.refused ? [this.#errorQuote(e)] : []));
        if (quotes.length > 0) this.#call(sub, quotes);
      });
    }
    if (this.#socket.isOpen) this.#queueFlush();
    else this.#socket.connect();

    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#remove(sub, [...wanted.keys()]);
    };
  }

  opened(): void {
    for (const entry of this.#entries.values()) {
      entry.sent = undefined;
      entry.refused = undefined;
    }
    this.#queueFlush();
  }

  closed(): void {
    this.#connection++;
    for (const entry of this.#entries.values()) entry.sent = undefined;
  }

  handle(frame: ServerMessage): void {
    if (frame.type !== "quotes.update") return;
    const quote = frame.payload;
    const ticker = tickerOf(quote.n);
    const entry = this.#entries.get(this.#aliases.get(ticker) ?? ticker);
    if (!entry) return;
    entry.last = copy(quote);
    for (const sub of [...entry.subs.keys()]) this.#call(sub, [copy(quote)]);
  }

  #remove(sub: Subscription, keys: string[]): void {
    const dropped: Entry[] = [];
    let slower = false;
    for (const key of keys) {
      const entry = this.#entries.get(key);
      if (!entry || !entry.subs.delete(sub)) continue;
      if (entry.subs.size === 0) {
        this.#entries.delete(key);
        if (entry.sent !== undefined) dropped.push(entry);
      } else if (entry.sent === true && !this.#wantsFast(entry)) {
        slower = true;
      }
    }
    // Sent without an id: the reply matters to nobody (unsubscribing something not followed is fine).
    for (let i = 0; i < dropped.length; i += BATCH) {
      this.#socket.send({
        type: "quotes.unsubscribe",
        payload: { symbols: dropped.slice(i, i + BATCH).map((e) => e.name) },
      });
    }
    // A symbol nobody wants fast any more is subscribed again at the slow rate.
    if (slower) this.#queueFlush();
  }

  #wantsFast(entry: Entry): boolean {
    for (const fast of entry.subs.values()) if (fast) return true;
    return false;
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    // One request for everything subscribed in the same turn.
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  /** Subscribes what is not subscribed (at the wanted rate) on this connection yet. */
  #flush(): void {
    if (!this.#socket.isOpen) return;
    const due = [...this.#entries.values()].filter(
      (e) => e.refused === undefined && e.sent !== this.#wantsFast(e),
    );
    for (let i = 0; i < due.length; i += BATCH) void this.#subscribeBatch(due.slice(i, i + BATCH));
  }

  async #subscribeBatch(batch: Entry[]): Promise<void> {
    const connection = this.#connection;
    for (const entry of batch) entry.sent = this.#wantsFast(entry);
    const slow = batch.filter((e) => !e.sent);
    const fast = batch.filter((e) => e.sent);
    const current = () =>
      connection === this.#connection ? batch.filter((e) => this.#entries.get(e.key) === e) : [];
    let reply: ServerMessage;
    try {
      reply = await this.#socket.request({
        type: "quotes.subscribe",
        payload: { symbols: slow.map((e) => e.name), fast_symbols: fast.map((e) => e.name) },
      });
    } catch (err) {
      const still = current();
      if (still.length === 0) return;
      // Still connected (the reply timed out): try again shortly; otherwise
      // the reconnect subscribes again.
      this.#emitError(new Error(`quotes.subscribe ${still.map((e) => e.name).join(",")}: ${describe(err)}`));
      for (const entry of still) entry.sent = undefined;
      setTimeout(() => this.#queueFlush(), 1000);
      return;
    }
    if (reply.type !== "quotes.subscribe.response") {
      this.#emitError(new Error(`quotes.subscribe: unexpected reply ${reply.type}`));
      return;
    }
    const still = current();
    if (reply.payload.status === "ok") {
      this.#learnAliases(slow, reply.payload.symbols);
      this.#learnAliases(fast, reply.payload.fast_symbols);
      return;
    }
    // Refused, and nothing of the request was taken.
    for (const entry of still) entry.sent = undefined;
    if (batch.length > 1) {
      // Find out which symbols the server refuses: one request each.
      for (const entry of still) void this.#subscribeBatch([entry]);
      return;
    }
    const entry = still[0];
    if (!entry) return;
    entry.refused = reply.payload.message;
    const quote = this.#errorQuote(entry);
    this.#emitError(new Error(`quotes.subscribe ${entry.name}: ${reply.payload.message}`));
    for (const sub of [...entry.subs.keys()]) {
      this.#call(sub, [copy(quote)]);
      try {
        sub.listener.onError?.(reply.payload.message);
      } catch (err) {
        this.#emitError(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  /** The reply lists the tickers in the order asked: remember those `tickerOf` does not predict. */
  #learnAliases(entries: Entry[], tickers: readonly string[]): void {
    if (entries.length !== tickers.length) return;
    entries.forEach((entry, i) => {
      const ticker = tickerOf(tickers[i]!);
      if (ticker !== entry.key) this.#aliases.set(ticker, entry.key);
    });
  }

  #errorQuote(entry: Entry): QuoteData {
    const quote: QuoteData = { s: "error", n: entry.name, v: {} };
    if (entry.refused !== undefined) quote.errmsg = entry.refused;
    return quote;
  }

  #call(sub: Subscription, quotes: QuoteData[]): void {
    try {
      sub.listener.onQuotes(quotes);
    } catch (err) {
      this.#emitError(err instanceof Error ? err : new Error(String(err)));
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
}
