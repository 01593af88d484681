//! Live sources: raw PCM on stdin, and a capture device through cpal (ALSA
//! on a Pi). Each runs on its own thread and sends 16 kHz chunks; a device
//! that is missing or fails is reported and retried, never fatal.

use std::io::Read;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Chunk;
use super::input::Resampler;

const RETRY: Duration = Duration::from_secs(2);

/// Signed 16-bit little-endian mono PCM at 16 kHz from standard input.
pub fn stdin(tx: mpsc::UnboundedSender<Chunk>, stop: CancellationToken) {
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 640];
        let mut odd: Option<u8> = None;
        while !stop.is_cancelled() {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Chunk::Failed(format!("reading stdin: {e}")));
                    break;
                }
            };
            let mut bytes: Vec<u8> = odd.take().into_iter().collect();
            bytes.extend_from_slice(&buf[..n]);
            if bytes.len() % 2 == 1 {
                odd = bytes.pop();
            }
            let samples = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            if tx.send(Chunk::Samples(samples)).is_err() {
                break;
            }
        }
    });
}

/// Finds a capture device by ALSA id (`hw:1,0`, `default`) or by name.
fn find(name: &str) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    if name == "default" {
        return host
            .default_input_device()
            .ok_or_else(|| "there is no default audio input".to_string());
    }
    let devices = host
        .input_devices()
        .map_err(|e| format!("cannot list audio inputs: {e}"))?;
    let mut seen = Vec::new();
    for d in devices {
        let id = d.id().map(|i| i.id().to_string()).unwrap_or_default();
        let desc = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_default();
        if id == name || desc == name || id.ends_with(&format!(":{name}")) {
            return Ok(d);
        }
        seen.push(if desc.is_empty() {
            id
        } else {
            format!("{id} ({desc})")
        });
    }
    Err(format!(
        "audio input {name:?} not found; available: {}",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    ))
}

/// Opens the device and streams from it until `stop`, reopening it after
/// an error (an unplugged USB microphone comes back when plugged in).
pub fn alsa(name: String, tx: mpsc::UnboundedSender<Chunk>, stop: CancellationToken) {
    std::thread::spawn(move || {
        while !stop.is_cancelled() {
            if let Err(e) = stream_once(&name, &tx, &stop) {
                if tx.send(Chunk::Failed(e)).is_err() {
                    return;
                }
                std::thread::sleep(RETRY);
            }
        }
    });
}

enum Raw {
    Samples(Vec<f32>),
    Error(String),
}

fn stream_once(
    name: &str,
    tx: &mpsc::UnboundedSender<Chunk>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let device = find(name)?;
    let supported = device
        .default_input_config()
        .map_err(|e| format!("audio input {name:?} has no usable format: {e}"))?;
    let channels = supported.channels().max(1) as usize;
    let rate = supported.sample_rate();
    let config: cpal::StreamConfig = supported.config();
    let (raw_tx, raw_rx) = std_mpsc::channel::<Raw>();
    let err_tx = raw_tx.clone();
    let on_error = move |e: cpal::Error| {
        let _ = err_tx.send(Raw::Error(format!("audio input failed: {e}")));
    };
    let mono = move |data: &[f32]| -> Vec<f32> {
        data.chunks(channels)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect()
    };
    let stream = match supported.sample_format() {
        cpal::SampleFormat::F32 => {
            let tx = raw_tx.clone();
            device.build_input_stream::<f32, _, _>(
                config,
                move |d: &[f32], _: &cpal::InputCallbackInfo| {
                    let _ = tx.send(Raw::Samples(mono(d)));
                },
                on_error,
                None,
            )
        }
        cpal::SampleFormat::I16 => {
            let tx = raw_tx.clone();
            device.build_input_stream::<i16, _, _>(
                config,
                move |d: &[i16], _: &cpal::InputCallbackInfo| {
                    let f: Vec<f32> = d.iter().map(|&s| s as f32 / 32768.0).collect();
                    let _ = tx.send(Raw::Samples(mono(&f)));
                },
                on_error,
                None,
            )
        }
        other => {
            return Err(format!(
                "audio input {name:?} delivers {other:?}, which is not supported"
            ));
        }
    }
    .map_err(|e| format!("cannot open audio input {name:?}: {e}"))?;
    stream
        .play()
        .map_err(|e| format!("cannot start audio input {name:?}: {e}"))?;
    let mut resampler = Resampler::new(rate)?;
    tracing::info!(input = %name, rate, channels, "Capturing.");
    while !stop.is_cancelled() {
        match raw_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Raw::Samples(s)) => {
                let out = resampler.push(&s);
                if !out.is_empty() && tx.send(Chunk::Samples(out)).is_err() {
                    return Ok(());
                }
            }
            Ok(Raw::Error(e)) => return Err(e),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("audio input {name:?} stopped"));
            }
        }
    }
    Ok(())
}
