//! The client's StartupMessage, rewritten so that the server receives the settings' `options`
//! and nothing else in that parameter: sqlx always sends the `PGOPTIONS` of this process's
//! environment and its API can only append to it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// PostgreSQL's limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;

/// The parameter rewritten.
const OPTIONS: &[u8] = b"options";

/// Reads the client's first packet whole: its length field, then the rest.
pub(super) async fn read<R>(local: &mut R) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin,
{
    let mut length = [0u8; 4];
    local.read_exact(&mut length).await?;
    let total = u32::from_be_bytes(length) as usize;
    if !(8..=MAX_STARTUP).contains(&total) {
        return Err(invalid(format!("a startup packet of {total} bytes")));
    }
    let mut packet = vec![0u8; total];
    packet[..4].copy_from_slice(&length);
    local.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

/// `packet` with its `options` parameter replaced by `options` (kept in the place sqlx gave
/// it, appended otherwise) or removed when `options` is `None`; the other parameters, their
/// order and the protocol version are kept. A packet that is not a protocol 3 StartupMessage
/// (a CancelRequest, say) comes back unchanged.
pub(super) fn rewrite(packet: &[u8], options: Option<&str>) -> io::Result<Vec<u8>> {
    let (Some(length), Some(version)) = (be_u32(packet, 0), be_u32(packet, 4)) else {
        return Err(invalid("a startup packet shorter than 8 bytes".into()));
    };
    if length as usize != packet.len() {
        return Err(invalid(format!(
            "a startup packet of {} bytes whose length field says {length}",
            packet.len()
        )));
    }
    // Major version 3 (3.0, 3.2, ...): name/value C strings and a closing NUL. The special
    // codes (SSLRequest, CancelRequest, ...) have major version 1234.
    if version >> 16 != 3 {
        return Ok(packet.to_vec());
    }
    let mut params = Vec::new();
    let mut rest = &packet[8..];
    loop {
        match rest {
            [0] => break,
            [] => return Err(invalid("a startup packet without its final NUL".into())),
            [0, ..] => return Err(invalid("bytes after a startup packet's final NUL".into())),
            _ => {}
        }
        let (name, after) = c_string(rest)?;
        let (value, after) = c_string(after)?;
        params.push((name, value));
        rest = after;
    }
    // No NUL can reach the server inside the value (the settings are checked for it too).
    let wanted: Option<Vec<u8>> = options.map(|o| o.bytes().filter(|&b| b != 0).collect());
    let mut out = Vec::with_capacity(packet.len() + wanted.as_ref().map_or(0, Vec::len) + 9);
    out.extend([0; 4]);
    out.extend(version.to_be_bytes());
    let mut placed = false;
    for (name, value) in params {
        let value = if name == OPTIONS {
            match (&wanted, placed) {
                (Some(wanted), false) => wanted.as_slice(),
                // Dropped: not wanted, or a second `options` (sent once).
                _ => continue,
            }
        } else {
            value
        };
        placed |= name == OPTIONS;
        push_param(&mut out, name, value);
    }
    if let (Some(wanted), false) = (&wanted, placed) {
        push_param(&mut out, OPTIONS, wanted);
    }
    out.push(0);
    let length = u32::try_from(out.len())
        .ok()
        .filter(|&l| l as usize <= MAX_STARTUP)
        .ok_or_else(|| invalid("a startup packet longer than 10000 bytes".into()))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

fn push_param(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend(name);
    out.push(0);
    out.extend(value);
    out.push(0);
}

fn c_string(bytes: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| invalid("an unterminated startup parameter".into()))?;
    Ok((&bytes[..end], &bytes[end + 1..]))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sqlx sent {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3_0: u32 = 3 << 16;
    const V3_2: u32 = (3 << 16) | 2;
    const CANCEL_REQUEST: u32 = 80_877_102;

    fn packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        for (name, value) in params {
            push_param(&mut body, name.as_bytes(), value.as_bytes());
        }
        body.push(0);
        let mut out = u32::try_from(body.len() + 4)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn the_options_sent_are_exactly_the_settings() {
        let user = ("user", "app");
        let db = ("database", "app");
        let env = ("options", "-c search_path=from_env");
        let ours = "-c search_path=ours -c pgauth.note=a\\ b";
        for (label, version, given, options, want) in [
            (
                "replaced in place",
                V3_0,
                vec![user, env, db],
                Some(ours),
                vec![user, ("options", ours), db],
            ),
            ("removed", V3_0, vec![user, env, db], None, vec![user, db]),
            (
                "appended",
                V3_0,
                vec![user, db],
                Some(ours),
                vec![user, db, ("options", ours)],
            ),
            (
                "absent stays absent",
                V3_0,
                vec![user, db],
                None,
                vec![user, db],
            ),
            (
                "protocol 3.2",
                V3_2,
                vec![user, env, ("_pq_.x", "1")],
                Some(ours),
                vec![user, ("options", ours), ("_pq_.x", "1")],
            ),
            (
                "sent once",
                V3_0,
                vec![env, user, env],
                Some(ours),
                vec![("options", ours), user],
            ),
            (
                "no parameters",
                V3_0,
                vec![],
                Some(ours),
                vec![("options", ours)],
            ),
            (
                "an empty value",
                V3_0,
                vec![("options", ""), user],
                Some(""),
                vec![("options", ""), user],
            ),
        ] {
            let out = rewrite(&packet(version, &given), options).unwrap();
            assert_eq!(out, packet(version, &want), "{label}");
        }
    }

    #[test]
    fn other_packets_pass_unchanged() {
        let mut cancel = 16_u32.to_be_bytes().to_vec();
        cancel.extend(CANCEL_REQUEST.to_be_bytes());
        cancel.extend([0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(rewrite(&cancel, Some("-c a=b")).unwrap(), cancel);
    }

    #[test]
    fn a_nul_in_the_options_never_reaches_the_server() {
        let out = rewrite(&packet(V3_0, &[("user", "app")]), Some("-c a=b\0c")).unwrap();
        assert_eq!(
            out,
            packet(V3_0, &[("user", "app"), ("options", "-c a=bc")])
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        let good = packet(V3_0, &[("user", "app")]);
        let mut wrong_length = good.clone();
        wrong_length[3] += 1;
        let mut no_final_nul = good.clone();
        no_final_nul.pop();
        no_final_nul[3] -= 1;
        let mut unterminated = packet(V3_0, &[]);
        unterminated.pop();
        unterminated.extend(b"user");
        unterminated.push(0);
        unterminated.extend(b"app");
        unterminated[3] = u8::try_from(unterminated.len()).unwrap();
        let too_long = packet(V3_0, &[("user", "app")]);
        for (label, bytes, options) in [
            ("short", &good[..6], None),
            ("length field", &wrong_length[..], None),
            ("final NUL", &no_final_nul[..], None),
            ("unterminated value", &unterminated[..], None),
            (
                "over the limit",
                &too_long[..],
                Some("x".repeat(MAX_STARTUP)),
            ),
        ] {
            let error = rewrite(bytes, options.as_deref()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{label}: {error}");
        }
    }

    #[tokio::test]
    async fn a_packet_is_read_whole_and_a_huge_length_refused() {
        let good = packet(V3_0, &[("user", "app")]);
        let mut with_more = good.clone();
        with_more.extend(b"Q-next");
        let mut reader = &with_more[..];
        assert_eq!(read(&mut reader).await.unwrap(), good);
        assert_eq!(reader, b"Q-next", "nothing past the packet is read");
        let huge = [0, 1, 0, 0, 0, 3, 0, 0];
        assert_eq!(
            read(&mut &huge[..]).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
