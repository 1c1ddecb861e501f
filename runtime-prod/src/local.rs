//! Single-threaded synchronisation primitives for tasks on one glommio executor:
//! a one-shot [`Slot`] and a generation-counting [`Notify`]. Both are `!Send` by
//! construction (`Rc`), which is the point: they never cross threads, so they
//! need no atomics or locks.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct SlotState<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

/// A value delivered once, from one task to another on the same thread.
pub struct Slot<T> {
    state: Rc<RefCell<SlotState<T>>>,
}

/// The sending half of a [`Slot`]. Dropping it without sending closes the slot.
pub struct SlotSender<T> {
    state: Rc<RefCell<SlotState<T>>>,
}

impl<T> Slot<T> {
    /// A new, empty slot and its sender.
    pub fn new() -> (SlotSender<T>, Slot<T>) {
        let state = Rc::new(RefCell::new(SlotState { value: None, closed: false, waker: None }));
        (SlotSender { state: state.clone() }, Slot { state })
    }
}

impl<T> SlotSender<T> {
    /// Delivers the value and wakes the receiver.
    pub fn send(self, value: T) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.value = Some(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for SlotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for Slot<T> {
    /// `None` when the sender was dropped without sending.
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.state.borrow_mut();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[derive(Default)]
struct NotifyState {
    generation: u64,
    wakers: Vec<Waker>,
}

/// Wakes every waiting task when something changed. Waiters remember the
/// generation they saw, so a change between reading state and waiting is never
/// missed.
#[derive(Clone, Default)]
pub struct Notify {
    state: Rc<RefCell<NotifyState>>,
}

impl Notify {
    /// A new notifier at generation 0.
    pub fn new() -> Notify {
        Notify::default()
    }

    /// The current generation; pass it to [`Notify::changed_since`].
    pub fn generation(&self) -> u64 {
        self.state.borrow().generation
    }

    /// Moves to the next generation and wakes every waiter.
    pub fn notify(&self) {
        let wakers = {
            let mut state = self.state.borrow_mut();
            state.generation += 1;
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once the generation differs from `seen`.
    pub async fn changed_since(&self, seen: u64) {
        futures_lite::future::poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.generation != seen {
                return Poll::Ready(());
            }
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_delivers_or_closes() {
        futures_lite::future::block_on(async {
            let (tx, rx) = Slot::new();
            tx.send(7);
            assert_eq!(rx.await, Some(7));
            let (tx, rx) = Slot::<u8>::new();
            drop(tx);
            assert_eq!(rx.await, None);
        });
    }

    #[test]
    fn notify_is_not_missed() {
        futures_lite::future::block_on(async {
            let notify = Notify::new();
            let seen = notify.generation();
            notify.notify();
            notify.changed_since(seen).await;
            assert_eq!(notify.generation(), seen + 1);
        });
    }
}
