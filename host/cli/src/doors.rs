//! The two HTTP doors a node serves: the public API (reads and transaction submission) and
//! the operator's admin listener (plugin swaps), each on a listener of its own.

use anyhow::{Context, Result};
use gridledger_api::admin::{self, AdminToken};
use gridledger_devices::PluginSet;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin listener, bound, and the token its requests need.
pub struct AdminDoor {
    listener: TcpListener,
    token: AdminToken,
    addr: SocketAddr,
}

impl AdminDoor {
    /// Binds `addr` and reads (or creates, 0600) the token in `data_dir`.
    pub async fn bind(addr: SocketAddr, data_dir: &Path) -> Result<AdminDoor> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let token = AdminToken::load_or_create(&data_dir.join(admin::TOKEN_FILE))?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener {addr}"))?;
        let addr = listener.local_addr()?;
        Ok(AdminDoor {
            listener,
            token,
            addr,
        })
    }

    /// The line a node prints about it.
    pub fn announce(&self) -> String {
        format!(
            "admin: http://{} (token in {})",
            self.addr,
            self.token.path().display()
        )
    }
}

/// Serves `api` on `public` and the admin routes on `admin` until `until` resolves, then
/// shuts both down gracefully and returns what `until` gave.
pub async fn serve<T>(
    public: TcpListener,
    api: axum::Router,
    admin: AdminDoor,
    plugins: Option<Arc<PluginSet>>,
    until: impl Future<Output = T>,
) -> Result<T> {
    let admin_app = admin::app(plugins, admin.token, admin.addr);
    let (quit_tx, quit) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let public = axum::serve(public, api).with_graceful_shutdown(wait(quit.clone()));
    let admin = axum::serve(admin.listener, admin_app).with_graceful_shutdown(wait(quit));
    let stopper = async {
        let out = until.await;
        let _ = quit_tx.send(true);
        out
    };
    let (out, public, admin) = tokio::join!(stopper, public.into_future(), admin.into_future());
    public.context("serving the API")?;
    admin.context("serving the admin listener")?;
    Ok(out)
}
