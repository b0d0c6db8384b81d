//! A virtual user: its own connection, the account(s) it logs in as, and its
//! own session, whose single-use refresh chain no other user touches.

use std::collections::HashMap;

use crate::api::{Api, Tokens};
use crate::conn::Connection;
use crate::failure::Failure;
use crate::scenario::{MIXED, Op, Scenario};

pub struct VirtualUser {
    conn: Connection,
    /// Emails this user logs in as, in turn.
    logins: Vec<String>,
    next_login: usize,
    tokens: Tokens,
    /// The device token each account gave this user's "browser".
    devices: HashMap<String, String>,
    rng: fastrand::Rng,
}

impl VirtualUser {
    /// A user already logged in; `id` seeds its choices so runs repeat.
    pub fn new(id: usize, conn: Connection, logins: Vec<String>, tokens: Tokens) -> Self {
        let mut devices = HashMap::new();
        if let (Some(first), Some(device)) = (logins.first(), &tokens.device) {
            devices.insert(first.clone(), device.clone());
        }
        VirtualUser {
            conn,
            logins,
            next_login: 1,
            tokens,
            devices,
            rng: fastrand::Rng::with_seed(id as u64),
        }
    }

    /// The next request of `scenario`; an access token near its expiry is
    /// refreshed first, as a real client would.
    pub fn next_op(&mut self, scenario: Scenario) -> Op {
        let wanted = match scenario {
            Scenario::Register => Op::Register,
            Scenario::Login => Op::Login,
            Scenario::Refresh => Op::Refresh,
            Scenario::Me => Op::Me,
            Scenario::Verify => Op::Verify,
            Scenario::Mixed => self.pick_mixed(),
        };
        match wanted {
            Op::Me | Op::Verify if !self.tokens.is_fresh() => Op::Refresh,
            op => op,
        }
    }

    pub async fn perform(&mut self, op: Op, api: &Api) -> Result<(), Failure> {
        match op {
            Op::Register => api.register(&mut self.conn, &api.fresh_email()).await,
            Op::Login => self.login(api).await,
            Op::Refresh => {
                self.tokens = api.refresh(&mut self.conn, &self.tokens.refresh).await?;
                Ok(())
            }
            Op::Me => api.me(&mut self.conn, &self.tokens).await,
            Op::Verify => api.verify(&mut self.conn, &self.tokens).await,
        }
    }

    /// After a failure the session may be gone (a refresh answered or not):
    /// start a new one.
    pub async fn recover(&mut self, api: &Api) -> Result<(), Failure> {
        self.login(api).await
    }

    async fn login(&mut self, api: &Api) -> Result<(), Failure> {
        let email = &self.logins[self.next_login % self.logins.len()];
        self.next_login = self.next_login.wrapping_add(1);
        let device = self.devices.get(email).map(String::as_str);
        self.tokens = api.login(&mut self.conn, email, device).await?;
        if let Some(device) = &self.tokens.device {
            self.devices.insert(email.clone(), device.clone());
        }
        Ok(())
    }

    fn pick_mixed(&mut self) -> Op {
        let total: u32 = MIXED.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(0..total);
        for (op, weight) in MIXED {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        Op::Me
    }
}
