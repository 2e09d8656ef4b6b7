//! The message parsing the session check rests on (the verdict is the core's,
//! `TargetSessionAttrs::refusal`); the relay against a real server is tested through the
//! engines (tests/emulator).

use super::*;

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    out.extend(body);
    out
}

#[test]
fn authentication_requests_that_wait_for_the_client() {
    for (code, answer) in [
        (0_u32, false),
        (3, true),
        (5, true),
        (10, true),
        (11, true),
        (12, false),
    ] {
        let request = message(b'R', &code.to_be_bytes());
        assert_eq!(needs_answer(&request), answer, "code {code}");
    }
}

#[test]
fn data_rows_and_errors_are_read() {
    let row = |cells: &[Option<&str>]| {
        let mut body = i16::try_from(cells.len()).unwrap().to_be_bytes().to_vec();
        for cell in cells {
            match cell {
                Some(v) => {
                    body.extend(i32::try_from(v.len()).unwrap().to_be_bytes());
                    body.extend(v.as_bytes());
                }
                None => body.extend((-1_i32).to_be_bytes()),
            }
        }
        body
    };
    assert_eq!(first_column(&row(&[Some("on")])).as_deref(), Some("on"));
    assert_eq!(first_column(&row(&[None])), None);
    assert_eq!(first_column(&row(&[])), None);
    assert_eq!(first_column(&[0, 1, 0, 0, 0, 9, b'o']), None, "truncated");
    let error = b"SERROR\0VERROR\0C42704\0Munrecognized parameter\0\0";
    assert_eq!(error_text(error), "unrecognized parameter");
    assert_eq!(query("SELECT 1"), message(b'Q', b"SELECT 1\0"));
}

#[tokio::test]
async fn a_message_is_read_whole_and_a_huge_one_refused() {
    let ok = message(b'Z', b"I");
    let mut with_more = ok.clone();
    with_more.extend(b"next");
    let mut reader = &with_more[..];
    assert_eq!(read_message(&mut reader).await.unwrap(), ok);
    assert_eq!(reader, b"next");
    let huge = [b'D', 0x7f, 0xff, 0xff, 0xff];
    assert_eq!(
        read_message(&mut &huge[..]).await.unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}
