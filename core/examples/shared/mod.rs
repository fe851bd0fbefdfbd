//! What the examples share: the HTTP answer that serves their page.

/// A `200 OK` answer carrying an HTML page, closing the connection.
pub fn page_response(page: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    )
    .into_bytes()
}
