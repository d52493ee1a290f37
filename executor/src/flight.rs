//! The executor's Arrow Flight service: Ballista's, which serves shuffle data
//! and results, plus the cached partitions this executor holds
//! ([`ember_core::cache::flight`]).

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use ballista_core::error::BallistaError;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server, create_grpc_server_incoming};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use ember_auth::{RequireTokenLayer, ServerSecurity, TlsIncoming};
use ember_core::cache::BlockStore;
use ember_core::cache::flight::{DROP_ACTION, REPORT_ACTION, answer_action, serve_block};
use ember_core::executor_status::{STATUS_ACTION, status_result};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// Ballista's Flight service with Ember's cached partitions.
#[derive(Clone)]
pub struct EmberFlightService {
    ballista: BallistaFlightService,
    store: &'static BlockStore,
    endpoint: String,
}

impl EmberFlightService {
    /// The service of an executor whose work dir is `work_dir` and whom peers
    /// reach at `endpoint` (host:port).
    pub fn new(work_dir: String, endpoint: String) -> Self {
        Self {
            ballista: BallistaFlightService::new(work_dir),
            store: BlockStore::global(),
            endpoint,
        }
    }

    /// Serves on `on` until `shutdown`: the task Ballista's executor process
    /// waits on. With TLS in `on.security`, connections are TLS; with a
    /// token, every request (shuffle and result fetches, cached partitions,
    /// actions) must carry it.
    pub async fn serve(
        self,
        on: FlightListener,
        mut shutdown: Shutdown,
        config: GrpcServerConfig,
        max_message_bytes: usize,
    ) -> Result<(), BallistaError> {
        let FlightListener {
            listener,
            address,
            security,
        } = on;
        let service = FlightServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        let mut server = create_grpc_server(&config).layer(RequireTokenLayer::optional(
            security.token.clone(),
            "executor Flight",
            &[],
        ));
        tracing::info!(%address, tls = security.tls.is_some(), "Arrow Flight service listening");
        let result = match (security.tls, listener) {
            (Some(tls), listener) => {
                let listener = match listener {
                    Some(listener) => {
                        listener.set_nonblocking(true)?;
                        tokio::net::TcpListener::from_std(listener)?
                    }
                    None => tokio::net::TcpListener::bind(address).await?,
                };
                let incoming = TlsIncoming::new(listener, tls, "executor Flight")?;
                server
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming.into_stream(), shutdown.recv())
                    .await
            }
            (None, Some(listener)) => {
                listener.set_nonblocking(true)?;
                let incoming = TcpIncoming::from(tokio::net::TcpListener::from_std(listener)?)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(config.tcp_keepalive_seconds)));
                server
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, shutdown.recv())
                    .await
            }
            (None, None) => {
                let incoming = create_grpc_server_incoming(address, &config)?;
                server
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, shutdown.recv())
                    .await
            }
        };
        result.map_err(BallistaError::TonicError)
    }
}

/// Where and how the Flight service listens.
pub struct FlightListener {
    /// A socket bound beforehand; when `None`, `address` is bound now.
    pub listener: Option<StdTcpListener>,
    /// The address served.
    pub address: SocketAddr,
    /// TLS and the token required of every request.
    pub security: ServerSecurity,
}

type Ballista = BallistaFlightService;

#[tonic::async_trait]
impl FlightService for EmberFlightService {
    type HandshakeStream = <Ballista as FlightService>::HandshakeStream;
    type ListFlightsStream = <Ballista as FlightService>::ListFlightsStream;
    type DoGetStream = <Ballista as FlightService>::DoGetStream;
    type DoPutStream = <Ballista as FlightService>::DoPutStream;
    type DoActionStream = <Ballista as FlightService>::DoActionStream;
    type ListActionsStream = <Ballista as FlightService>::ListActionsStream;
    type DoExchangeStream = <Ballista as FlightService>::DoExchangeStream;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        match serve_block(self.store, request.get_ref()) {
            Some(stream) => Ok(Response::new(stream?)),
            None => self.ballista.do_get(request).await,
        }
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        if request.get_ref().r#type == STATUS_ACTION {
            let status = crate::status::ExecutorMetrics::global()
                .map(|metrics| metrics.status())
                .unwrap_or_default();
            let answer = status_result(&status);
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(answer)]))));
        }
        match answer_action(self.store, request.get_ref(), &self.endpoint) {
            Some(answer) => {
                let answer = answer?;
                Ok(Response::new(Box::pin(futures::stream::iter([Ok(answer)]))))
            }
            None => self.ballista.do_action(request).await,
        }
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        use futures::StreamExt;
        let ballista = self.ballista.list_actions(request).await?.into_inner();
        let ours = [
            (
                REPORT_ACTION,
                "What this executor holds of a cached dataset",
            ),
            (DROP_ACTION, "Frees a cached dataset's partitions"),
            (
                STATUS_ACTION,
                "This executor's tasks, memory pool and disk use",
            ),
        ]
        .map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        });
        Ok(Response::new(Box::pin(
            ballista.chain(futures::stream::iter(ours)),
        )))
    }

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.ballista.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.ballista.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.ballista.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.ballista.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.ballista.get_schema(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.ballista.do_put(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.ballista.do_exchange(request).await
    }
}
