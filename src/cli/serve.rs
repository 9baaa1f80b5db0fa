//! `mcp-authd serve`: the listener, the admin socket, the metrics listener, the signals
//! (SIGTERM/SIGINT drain, SIGHUP reload) and the start-up checks.

use super::*;

pub(super) fn serve(
    config_path: &Path,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    insecure: bool,
    shutdown_timeout: std::time::Duration,
) -> ExitCode {
    let (config, section) = match Config::load_with_section(config_path) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e.0),
    };
    if !listen.ip().is_loopback() && !insecure {
        return fail([format!(
            "refusing to listen on {listen}: not a loopback address (put mcp-authd behind its reverse proxy on loopback, or pass --insecure)"
        )]);
    }
    if let Some(metrics) = metrics_listen.filter(|m| !m.ip().is_loopback() && !insecure) {
        return fail([format!(
            "refusing to serve metrics on {metrics}: not a loopback address (scrape it on loopback, or pass --insecure)"
        )]);
    }
    tracing::info!(
        version = crate::VERSION,
        store = "file",
        "mcp-authd starting"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    #[cfg(unix)]
    warn_if_few_file_descriptors(config.max_connections);
    let signer = config.signer();
    tracing::info!(algorithm = %signer.algorithm(), kid = %signer.key_id(), "signing access tokens");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail([format!("cannot start the async runtime: {e}")]),
    };
    #[cfg(unix)]
    runtime.block_on(survive_file_size_limit());
    #[cfg(unix)]
    let hangups = runtime.block_on(catch_hangups());
    let mut state_file = None;
    let store: Arc<dyn Store> = match state_source_for(config_path, &config.store) {
        StateSource::File(path) => match StateStore::open(&path) {
            Ok(store) => {
                tracing::info!(state_path = %path.display(), "state loaded");
                state_file = Some(path);
                Arc::new(store)
            }
            Err(e) => return fail([e.to_string()]),
        },
        StateSource::Inline(text) => match parse_document(&text, &inline_origin()) {
            Ok(doc) => {
                tracing::warn!(
                    "state comes from {STATE_INLINE_ENV} and is never written: registrations, consents and refresh tokens made now are lost on restart"
                );
                Arc::new(StateStore::in_memory(doc))
            }
            Err(e) => return fail([e.to_string()]),
        },
    };
    let issuer = config
        .issuers()
        .map(|i| i.url.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let timeouts = crate::http::conn::Timeouts {
        shutdown: shutdown_timeout,
        ..Default::default()
    }
    .with_test_overrides();
    let live = crate::http::LiveApp::new(Arc::new(AppState::new(config, store)));
    let state = live.state();
    let config_file = config_path.to_path_buf();
    let reloader = crate::reload::Reloader::new(
        config_path.to_path_buf(),
        live.clone(),
        section,
        Box::new(
            move |c: &Config| match state_source_for(&config_file, &c.store) {
                StateSource::File(path) => path.display().to_string(),
                StateSource::Inline(_) => format!("{STATE_INLINE_ENV} (inline)"),
            },
        ),
    );
    let result = runtime.block_on(async move {
        #[cfg(unix)]
        if let Some(hangups) = hangups {
            tokio::spawn(reload_on_hangup(hangups, reloader));
        }
        #[cfg(not(unix))]
        drop(reloader);
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        if let Some(address) = metrics_listen {
            let metrics = tokio::net::TcpListener::bind(address).await?;
            tracing::info!("metrics at http://{}/metrics", metrics.local_addr()?);
            let app = crate::http::metrics::router(state.metrics.clone(), state.store.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(metrics, app).await {
                    tracing::error!("the metrics listener failed: {e}");
                }
            });
        }
        #[cfg(unix)]
        if let Some(path) = state_file.clone() {
            let (store, clock) = (state.store.clone(), state.clock.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::admin::serve_socket(&path, store, clock).await {
                    tracing::error!("admin socket for {} failed: {e}", path.display());
                }
            });
        }
        tracing::info!("mcp-authd listening on http://{local} (issuer {issuer})");
        drop(state);
        let served = crate::http::serve_live(listener, live, shutdown, timeouts).await;
        if let Some(path) = &state_file {
            let _ = std::fs::remove_file(crate::admin::socket_path(path));
        }
        served
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail([format!("cannot serve on {listen}: {e}")]),
    }
}

/// Catches SIGXFSZ, whose default action kills the process when a write passes the file size
/// limit (`ulimit -f`). Caught, the write fails with EFBIG instead, which the store handles like
/// a full disk: the request gets a 503 and nothing unpersisted is handed out. Tokio keeps a
/// signal's handler installed for the life of the process, so the stream can be dropped.
#[cfg(unix)]
pub(super) async fn survive_file_size_limit() {
    let xfsz = tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ);
    if let Err(e) = tokio::signal::unix::signal(xfsz) {
        tracing::warn!("cannot catch SIGXFSZ ({e}): a file size limit would stop the server");
    }
}

/// Catches SIGHUP, whose default action ends the process, before the server answers: a
/// hangup that arrives before the reload task runs is kept and handled by it. `None` (logged)
/// when the handler cannot be installed.
#[cfg(unix)]
pub(super) async fn catch_hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .map_err(|e| tracing::warn!("cannot catch SIGHUP ({e}): a hangup would stop the server"))
        .ok()
}

/// Reloads the configuration on every SIGHUP, one reload at a time: hangups that arrive
/// while one runs are folded into one more (see [`crate::reload`]).
#[cfg(unix)]
pub(super) async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: crate::reload::Reloader,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        // The outcome is logged by the reloader; the server goes on either way.
        let _ = reloader.reload().await;
    }
}

/// File descriptors kept beside the connections: the listeners, the state files, the runtime.
#[cfg(unix)]
pub(super) const FD_RESERVE: u64 = 64;

/// Warns when the open-file limit cannot hold `maxConnections` connections: past it, `accept`
/// fails and the server can only make room by closing idle connections.
#[cfg(unix)]
pub(super) fn warn_if_few_file_descriptors(max_connections: usize) {
    use rustix::process::{Resource, getrlimit};
    let needed = (max_connections as u64).saturating_add(FD_RESERVE);
    if let Some(limit) = getrlimit(Resource::Nofile).current
        && limit < needed
    {
        tracing::warn!(
            "the open-file limit ({limit}) is below maxConnections ({max_connections}) + {FD_RESERVE}: raise it (ulimit -n, systemd LimitNOFILE=) or lower oauthAs.maxConnections; at the limit, idle connections are closed to make room"
        );
    }
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are installed now, not when the
/// future is first polled: a SIGTERM that arrives as soon as the server answers must already
/// drain it rather than meet the default action (exit without flushing). Needs the runtime.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind)
                .map_err(|e| tracing::warn!("cannot listen for signal {kind:?}: {e}"))
                .ok()
        })
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate] = listeners;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
