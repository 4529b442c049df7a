//! The `quotes` channel: watchlist quotes. A followed symbol is pulled from
//! the shared quote board (`quote_board`) on the connection's tick: a fast
//! symbol every broadcast interval, the others at most once a second; a
//! quote goes out only when it changed since this client was sent it.

use std::collections::HashMap;

use async_trait::async_trait;
use trading_pro::messages::{
    ClientMessage, QuotesSubscriptionRequest, QuotesSubscriptionResponse, ServerMessage,
    SubscriptionStatus,
};

use super::{Channel, Overflowed, Session};

/// A followed quote symbol: its rate, and the version of its quote this
/// client was last sent (0: none yet).
struct QuoteFollow {
    fast: bool,
    sent: u64,
}

/// Which followed symbols a pass looks at.
#[derive(Clone, Copy)]
enum Pass {
    /// Those not sent a quote yet (just subscribed).
    New,
    /// The fast ones (every tick).
    Fast,
    /// All of them (every second).
    All,
}

/// Followed quote symbols, by ticker.
#[derive(Default)]
pub struct QuotesChannel {
    quotes: HashMap<String, QuoteFollow>,
}

#[async_trait]
impl Channel for QuotesChannel {
    fn name(&self) -> &'static str {
        "quotes"
    }

    fn subscriptions(&self) -> usize {
        self.quotes.len()
    }

    async fn handle(
        &mut self,
        id: Option<&str>,
        message: ClientMessage,
        session: &Session<'_>,
    ) -> Result<Result<(), Overflowed>, ClientMessage> {
        Ok(match message {
            ClientMessage::QuotesSubscribe(req) => {
                let reply = self.subscribe(&req, session);
                match session.reply(ServerMessage::QuotesSubscribeResponse(reply), id) {
                    // The new symbols' quotes go out now, after the reply.
                    Ok(()) => self.pass(Pass::New, session).await,
                    Err(e) => Err(e),
                }
            }
            ClientMessage::QuotesUnsubscribe(req) => {
                let reply = self.unsubscribe(&req, session);
                session.reply(ServerMessage::QuotesUnsubscribeResponse(reply), id)
            }
            other => return Err(other),
        })
    }

    fn ticking(&self) -> bool {
        !self.quotes.is_empty()
    }

    async fn tick(&mut self, all: bool, session: &Session<'_>) -> Result<(), Overflowed> {
        self.pass(if all { Pass::All } else { Pass::Fast }, session)
            .await
    }

    fn narrow(&mut self, session: &Session<'_>) -> Vec<String> {
        let catalog = session.state.source.catalog();
        let mut lost: Vec<String> = self
            .quotes
            .keys()
            .filter(|t| catalog.lookup(t).is_none_or(|s| !session.may_see(s)))
            .cloned()
            .collect();
        lost.sort();
        for ticker in &lost {
            self.quotes.remove(ticker);
            session.state.metrics.subscribed("quotes", -1);
        }
        lost.iter().map(|t| format!("quotes:{t}")).collect()
    }

    fn close(&mut self, session: &Session<'_>) {
        let name = self.name();
        session
            .state
            .metrics
            .subscribed(name, -(self.quotes.len() as i64));
        self.quotes.clear();
    }
}

impl QuotesChannel {
    /// Follows the request's symbols (a symbol in `fast_symbols` at the
    /// fast rate), all or none: the reply names the first symbol that
    /// cannot be followed.
    fn subscribe(
        &mut self,
        req: &QuotesSubscriptionRequest,
        session: &Session<'_>,
    ) -> QuotesSubscriptionResponse {
        let refused = |message: String| QuotesSubscriptionResponse {
            status: SubscriptionStatus::Error,
            message,
            symbols: vec![],
            fast_symbols: vec![],
        };
        if req.symbols.is_empty() && req.fast_symbols.is_empty() {
            return refused("Name at least one symbol in symbols or fast_symbols".into());
        }
        let catalog = session.state.source.catalog();
        let mut wanted: Vec<(String, bool)> = Vec::new();
        let named = req
            .symbols
            .iter()
            .map(|n| (n, false))
            .chain(req.fast_symbols.iter().map(|n| (n, true)));
        for (name, fast) in named {
            match session
                .entitled(&catalog, name)
                .map(|s| s.ticker().to_string())
            {
                Ok(ticker) => match wanted.iter_mut().find(|(t, _)| *t == ticker) {
                    Some(w) => w.1 |= fast,
                    None => wanted.push((ticker, fast)),
                },
                Err(message) => return refused(message),
            }
        }
        let added = wanted
            .iter()
            .filter(|(t, _)| !self.quotes.contains_key(t))
            .count();
        let max = session.state.limits.max_subscriptions;
        if session.others + self.quotes.len() + added > max {
            return refused(format!(
                "Too many subscriptions: at most {max} per connection (bar topics and quote \
                 symbols together)"
            ));
        }
        let (mut symbols, mut fast_symbols) = (Vec::new(), Vec::new());
        for (ticker, fast) in wanted {
            let follow = self
                .quotes
                .entry(ticker.clone())
                .or_insert(QuoteFollow { fast, sent: 0 });
            follow.fast = fast;
            if fast {
                fast_symbols.push(ticker);
            } else {
                symbols.push(ticker);
            }
        }
        session.state.metrics.subscribed("quotes", added as i64);
        QuotesSubscriptionResponse {
            status: SubscriptionStatus::Ok,
            message: format!("Following the quotes of {} symbols", self.quotes.len()),
            symbols,
            fast_symbols,
        }
    }

    /// Stops following the request's symbols (from either list); names
    /// that are not followed, or not symbols at all, are simply not there.
    fn unsubscribe(
        &mut self,
        req: &QuotesSubscriptionRequest,
        session: &Session<'_>,
    ) -> QuotesSubscriptionResponse {
        let catalog = session.state.source.catalog();
        let (mut symbols, mut fast_symbols) = (Vec::new(), Vec::new());
        for name in req.symbols.iter().chain(&req.fast_symbols) {
            let ticker = catalog.lookup(name).map(|s| s.ticker().to_string());
            if let Some(follow) = ticker.as_ref().and_then(|t| self.quotes.remove(t)) {
                session.state.metrics.subscribed("quotes", -1);
                let ticker = ticker.unwrap_or_default();
                if follow.fast {
                    fast_symbols.push(ticker);
                } else {
                    symbols.push(ticker);
                }
            }
        }
        QuotesSubscriptionResponse {
            status: SubscriptionStatus::Ok,
            message: format!(
                "Stopped {} quote symbols; following {}",
                symbols.len() + fast_symbols.len(),
                self.quotes.len()
            ),
            symbols,
            fast_symbols,
        }
    }

    /// Queues the quotes that changed since this client was last sent them
    /// (for `Pass::New`, the first quote of newly followed symbols). A
    /// symbol the token no longer sees is skipped (the per-update check).
    async fn pass(&mut self, pass: Pass, session: &Session<'_>) -> Result<(), Overflowed> {
        let state = session.state;
        let now_ms = state.clock.now_ms();
        let catalog = state.source.catalog();
        let interval = state.limits.quote_interval;
        for (ticker, follow) in self.quotes.iter_mut() {
            let look = match pass {
                Pass::New => follow.sent == 0,
                Pass::Fast => follow.fast,
                Pass::All => true,
            };
            let Some(symbol) = catalog
                .lookup(ticker)
                .filter(|s| look && session.may_see(s))
            else {
                continue;
            };
            let quote = state
                .quotes
                .current(state.source.as_ref(), symbol, now_ms, interval)
                .await;
            if quote.version != follow.sent {
                follow.sent = quote.version;
                session.push(quote.frame.to_string())?;
            }
        }
        Ok(())
    }
}
