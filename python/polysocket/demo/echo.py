"""Echo server: every path, every draft, compression on.

    python -m polysocket echo --host 127.0.0.1 --port 9001
"""

from polysocket import WebSocketClosedError, WebSocketHandler, serve


class EchoHandler(WebSocketHandler):
    def check_origin(self, origin):
        return True  # any page may connect

    def on_message(self, message):
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            pass  # it arrived after the close began: nobody is left to answer


ROUTES = [(r"/.*", EchoHandler)]


def main(host="127.0.0.1", port=9001, **options):
    serve(ROUTES, host, port, **options)


if __name__ == "__main__":
    main()
