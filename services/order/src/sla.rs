//! `GET /sla`: the order service's SLA figure as JSON, for the gateway's
//! overview (the same mean the gauge `order_service_avg_latency_30s` shows
//! Prometheus, without parsing its text format).

use poem_openapi::{OpenApi, Tags, payload::Json};
use valerix_runtime::{contract::sla::Sla, telemetry::requests::LatencyGauge};

#[derive(Tags)]
enum Tag {
    /// The service level placing an order keeps
    Sla,
}

pub struct SlaApi {
    gauge: LatencyGauge,
}

impl SlaApi {
    pub fn new(gauge: LatencyGauge) -> Self {
        Self { gauge }
    }
}

#[OpenApi]
impl SlaApi {
    /// The SLA now.
    ///
    /// The mean latency of placing an order over the last 30 s against its
    /// 1 s limit. Always 200: the figure is kept in memory.
    #[oai(path = "/sla", method = "get", tag = "Tag::Sla")]
    async fn sla(&self) -> Json<Sla> {
        Json(Sla::new(self.gauge.mean()))
    }
}
