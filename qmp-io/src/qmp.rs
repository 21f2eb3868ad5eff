//! The two traits every QMP client implements, whatever carries its bytes: [`Qmp`]
//! for blocking clients, [`AsyncQmp`] for async ones. Code written against them (a
//! typed catalogue, VM operations that wait for an outcome, a test body) runs over
//! a QMP socket, a child's stdio or a transport that carries whole messages.

use core::future::Future;

use crate::call::{Call, decode};
use crate::{Command, EventFilter, Json, Result, Subscription};

/// A blocking QMP client: commands in, replies and events out.
///
/// Implemented by [`blocking::Client`](crate::blocking::Client); other
/// transports implement [`call`](Self::call), [`subscribe`](Self::subscribe) and
/// [`is_closed`](Self::is_closed) and get the rest.
///
/// ```no_run
/// use qmp_io::Qmp;
///
/// /// Pauses any VM, whatever the client is connected through.
/// fn pause(qmp: &impl Qmp) -> qmp_io::Result<()> {
///     qmp.execute_raw("stop", ())?;
///     Ok(())
/// }
/// ```
pub trait Qmp {
    /// Runs a [`Call`] and returns its `return` value; a QMP error reply is
    /// [`Error::Command`](crate::Error::Command).
    fn call(&self, call: Call) -> Result<Json>;

    /// Events matching `filter`, from now on, until the subscription is dropped.
    fn subscribe(&self, filter: EventFilter) -> Subscription;

    /// True once the connection is over.
    fn is_closed(&self) -> bool;

    /// Runs a typed command and decodes its return value.
    fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        decode(&self.call(Call::command(command))?)
    }

    /// Runs command `name` with `arguments` (anything that serializes to a JSON
    /// object, or `()` for none).
    fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments))
    }
}

/// An async QMP client: commands in, replies and events out.
///
/// Implemented by [`nonblocking::Client`](crate::nonblocking::Client) on every
/// runtime; other transports implement [`call`](Self::call),
/// [`subscribe`](Self::subscribe) and [`is_closed`](Self::is_closed) and get
/// the rest. Every future it returns is `Send`.
///
/// ```no_run
/// use qmp_io::AsyncQmp;
///
/// /// Pauses any VM, whatever the client is connected through.
/// async fn pause(qmp: &impl AsyncQmp) -> qmp_io::Result<()> {
///     qmp.execute_raw("stop", ()).await?;
///     Ok(())
/// }
/// ```
pub trait AsyncQmp: Send + Sync {
    /// Runs a [`Call`] and returns its `return` value; a QMP error reply is
    /// [`Error::Command`](crate::Error::Command).
    fn call(&self, call: Call) -> impl Future<Output = Result<Json>> + Send;

    /// Events matching `filter`, from now on, until the subscription is dropped.
    /// The [`Subscription`] is a `futures_core::Stream`.
    fn subscribe(&self, filter: EventFilter) -> Subscription;

    /// True once the connection is over.
    fn is_closed(&self) -> bool;

    /// Runs a typed command and decodes its return value. The arguments are
    /// serialized before the first poll, so the future does not borrow `command`.
    fn execute<C: Command>(&self, command: &C) -> impl Future<Output = Result<C::Returns>> + Send
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let reply = self.call(Call::command(command));
        async move { decode(&reply.await?) }
    }

    /// Runs command `name` with `arguments` (anything that serializes to a JSON
    /// object, or `()` for none).
    fn execute_raw(
        &self,
        name: &str,
        arguments: impl serde::Serialize,
    ) -> impl Future<Output = Result<Json>> + Send {
        self.call(Call::new(name).arguments(arguments))
    }
}

impl Qmp for crate::blocking::Client {
    fn call(&self, call: Call) -> Result<Json> {
        crate::blocking::Client::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        crate::blocking::Client::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        crate::blocking::Client::is_closed(self)
    }

    fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        crate::blocking::Client::execute(self, command)
    }
}

impl<R: crate::nonblocking::Runtime> AsyncQmp for crate::nonblocking::Client<R> {
    fn call(&self, call: Call) -> impl Future<Output = Result<Json>> + Send {
        crate::nonblocking::Client::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        crate::nonblocking::Client::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        crate::nonblocking::Client::is_closed(self)
    }
}
