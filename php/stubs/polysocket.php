<?php
// IDE stubs for the polysocket extension (php/src: the Rust classes, and
// php/src/prelude.php: the application classes, declared on first use
// unless another autoloader or the script supplies its own copy).
// Not loaded by PHP; point your IDE at this file.

namespace WebSocket {

    /** php-websocket's server, on polysocket's Rust runtime. */
    class Server
    {
        /**
         * Binds at once; throws when the address is taken, or when $ssl and
         * the certificate or key cannot be used (the message names the
         * cause, e.g. an encrypted key without its passphrase).
         * @param array $options for $ssl: ['cert' => PEM path, 'key' => PEM path,
         *                       'passphrase' => for an encrypted key] ('local_cert',
         *                       'local_pk' also work); default: php-websocket's
         *                       ./server.pem holding both, passphrase 'shinywss'
         */
        public function __construct(string $host = 'localhost', int $port = 8000, bool $ssl = false, ?array $options = null) {}
        // $options['reuse_port'] (bool, default php.ini polysocket.reuse_port):
        // bind with SO_REUSEPORT so that N daemons share the port.

        /** Serve until stop() or SIGINT/SIGTERM; every client then gets 1001. */
        public function run(): void {}

        /** End run() after the current callback. */
        public function stop(): void {}

        /** Serve $application at /$key ('*': every other path); 'status' gets setServerInfo(). */
        public function registerApplication(string $key, mixed $application): void {}

        /** @return object|false */
        public function getApplication(mixed $key): mixed {}

        /** False when (int)$max is 0. Default 30. */
        public function setMaxClients(mixed $max): bool {}
        public function getMaxClients(): int {}

        /** False unless a bool. Default true. */
        public function setCheckOrigin(mixed $doOriginCheck): bool {}
        public function getCheckOrigin(): bool {}

        /** 'http://www.example.com/x' is stored as 'example.com'; false when empty. */
        public function setAllowedOrigin(mixed $domain): bool {}
        /** @return string[] */
        public function getAllowedOrigins(): array {}
        public function checkOrigin(string $domain): bool {}

        /** False unless an int; 0: no limit. Default 5. */
        public function setMaxConnectionsPerIp(mixed $limit): bool {}
        public function getMaxConnectionsPerIp(): int {}

        /** Messages per client per minute (then close 1008). False unless an int; 0: no limit. Default 50. */
        public function setMaxRequestsPerMinute(mixed $limit): bool {}
        public function getMaxRequestsPerMinute(): int {}

        /**
         * Bytes all connections together may hold for their clients (partial
         * frames, reassembly, inflation, unsent output); the connection whose
         * data would pass it is closed with 1013 (try again later), the others
         * keep working. False unless an int >= 0; 0: no budget. Default:
         * php.ini polysocket.max_buffered_total (268435456, 256 MiB).
         */
        public function setMaxBufferedTotal(mixed $bytes): bool {}
        public function getMaxBufferedTotal(): int {}

        /**
         * PEM certificate chain and key for wss, loaded at once; $passphrase
         * decrypts an encrypted (PKCS#8) key. Throws, naming the cause, when
         * they cannot be used.
         */
        public function setCertificate(string $certFile, ?string $keyFile = null, ?string $passphrase = null): bool {}

        /**
         * Read the certificate and key files again (after a renewal): new
         * handshakes get the new certificate, open connections carry on.
         * A broken, missing or mismatched file changes nothing: false, the
         * cause in the log and a warning. SIGHUP does the same during run().
         */
        public function reloadCertificate(): bool {}

        /**
         * Join a cluster over Redis (docs/CLUSTER.md): broadcasts, groups,
         * connection ids and presence shared by every node on $url under
         * $namespace (1-64 of A-Z a-z 0-9 _ - .; null: php.ini's
         * polysocket.cluster_namespace). $url null or '': no cluster
         * (whatever php.ini says).
         * @param array $options ['heartbeat' => 1.0 (s), 'expiry' => 3.0 (s), 'queue' => 65536]
         * @throws \InvalidArgumentException for a bad URL or namespace, an unknown option or a
         *         value of the wrong kind, naming the cause
         */
        public function setCluster(?string $url, ?string $namespace = null, ?array $options = null): bool {}
        /** @return array|null ['url', 'namespace', 'heartbeat', 'expiry', 'queue'] */
        public function getCluster(): ?array {}

        /**
         * Proxies (IP addresses or CIDRs, e.g. ['10.0.0.0/8', '127.0.0.1'])
         * whose X-Forwarded-For / Forwarded headers, or PROXY header with
         * setProxyProtocol(true), name the client getClientIp() and the
         * per-IP limit use. Replaces the list.
         * @param string[] $proxies
         * @throws \InvalidArgumentException an entry that is no address or CIDR (named)
         */
        public function setTrustedProxies(array $proxies): bool {}
        /** @return string[] the trusted proxies as CIDRs */
        public function getTrustedProxies(): array {}

        /**
         * Every connection starts with a PROXY protocol header (v1 or v2)
         * from a trusted proxy; others are closed. False unless a bool.
         */
        public function setProxyProtocol(mixed $on): bool {}
        public function getProxyProtocol(): bool {}

        /**
         * Rolling restarts: on SIGTERM/SIGINT, run() first closes the
         * listening socket (a new daemon on the port, reuse_port, takes new
         * clients) and serves the open connections up to $seconds, then
         * closes the rest with 1001. 0 (default): at once. False unless a
         * number >= 0.
         */
        public function setDrainTimeout(int|float $seconds): bool {}
        public function getDrainTimeout(): float {}

        /**
         * WebSockets over HTTP/2 (RFC 8441) on a wss:// server: ALPN offers
         * h2, so a browser opens its WebSockets as streams of one
         * connection; each stream counts as a connection for the limits.
         * Default on; no effect on ws://. False unless a bool.
         */
        public function setHttp2(mixed $on): bool {}
        public function getHttp2(): bool {}

        /**
         * WebSockets one HTTP/2 connection may have open at once (default
         * 100); further streams are refused (REFUSED_STREAM). False unless
         * an int in 1..4294967295.
         */
        public function setHttp2MaxStreams(mixed $max): bool {}
        public function getHttp2MaxStreams(): int {}

        /**
         * Streams an HTTP/2 client may reset before the server took them up
         * (default 20): past it the connection is closed with
         * GOAWAY(ENHANCE_YOUR_CALM), the "rapid reset" attack
         * (CVE-2023-44487). False unless an int >= 1.
         */
        public function setHttp2MaxPendingResets(mixed $max): bool {}
        public function getHttp2MaxPendingResets(): int {}

        /**
         * Answer GET /metrics on the server's port with getStats() in
         * Prometheus' text format (docs/OPERATIONS.md). False unless a bool.
         */
        public function setMetrics(mixed $on): bool {}
        public function getMetrics(): bool {}

        /**
         * Serve GET /metrics on this port of the server's address instead
         * (0: a free one; null: none). False unless null or 0..65535.
         */
        public function setMetricsPort(mixed $port): bool {}
        /** @return int|null the port listened on while run() serves, else the one asked for */
        public function getMetricsPort(): ?int {}

        /**
         * The metrics while run() serves: connections, by_draft,
         * by_extension, by_http_version ("1.1", "2" for HTTP/2 streams),
         * handshakes_accepted, handshakes_refused (status =>
         * count), messages_in, bytes_in, messages_out, bytes_out, closes
         * (close code => count), limits (name => hits), buffered_bytes,
         * cluster (the bus's counters or null).
         * @throws \Exception when the server is not running
         */
        public function getStats(): array {}

        /**
         * SO_REUSEPORT: N daemons on one port, the kernel spreading new
         * connections. Rebinds now; the other daemons must ask in their
         * constructor ($options['reuse_port'] or php.ini). False unless a bool.
         */
        public function setReusePort(mixed $reuse): bool {}
        public function getReusePort(): bool {}

        /**
         * Answer a plain HTTP GET of $path with $body (e.g. the chat page).
         * @throws \InvalidArgumentException for a $contentType with a line break
         */
        public function registerPage(string $path, string $body, string $contentType = 'text/html; charset=utf-8'): void {}

        public function getHost(): string {}
        /** The bound port (the chosen one for port 0). */
        public function getPort(): int {}
        public function isSsl(): bool {}

        /** Writes "Y-m-d H:i:s [$type] $message". */
        public function log(string $message, string $type = 'info'): void {}

        /**
         * One message to many clients, encoded once per protocol family.
         * @param Connection[] $clients
         * @return int how many it was queued for
         * @throws \InvalidArgumentException unless $type is text or binary
         */
        public static function broadcast(array $clients, mixed $payload, string $type = 'text'): int {}

        // The static calls below act on the server whose run() is serving
        // (they throw \Exception when none is). What arrives from the bus is
        // delivered by the extension itself, never through PHP.

        /**
         * One message to every connection of the namespace on every node.
         * @return int how many local connections it was queued for
         * @throws \InvalidArgumentException unless $type is text or binary
         */
        public static function broadcastAll(mixed $payload, string $type = 'text'): int {}

        /**
         * One message to every member of $group on every node ($client->join()).
         * @return int how many local members it was queued for
         * @throws \InvalidArgumentException unless $type is text or binary; a name over 65535 bytes
         */
        public static function broadcastGroup(string $group, mixed $payload, string $type = 'text'): int {}

        /**
         * $client->send() for connection $id ($client->getId()) on any node.
         * @return bool true when queued (another node's: handed to the bus for
         *              the live node owning it, at most once); false when no
         *              live node has it
         * @throws \InvalidArgumentException as $client->send()
         */
        public static function sendTo(int $id, mixed $payload, string $type = 'text'): bool {}

        /**
         * Close connection $id on any node ($reason '': php-websocket's text).
         * @return bool false when no live node has it
         * @throws \InvalidArgumentException for a code that may not be sent
         */
        public static function closeTo(int $id, int $code = 1000, string $reason = ''): bool {}

        /** Open connections in the namespace (null) or in $group, on every live node. */
        public static function presence(?string $group = null): int {}

        /** @return int[] the live node ids, this one included ([] when not clustered) */
        public static function nodes(): array {}

        /**
         * @return array|null ['node_id', 'connected', 'published', 'received',
         *         'dropped', 'malformed', 'unroutable', 'reconnects',
         *         'last_outage' (seconds or null)], null when not clustered
         */
        public static function clusterStats(): ?array {}
    }

    /** A client ($client in the callbacks). Not constructible from PHP. */
    class Connection
    {
        /**
         * Queue a message (never blocks). $type: text, binary, ping, pong
         * (unsolicited), close (1000 with $payload as the reason).
         * @return bool true when queued; false when the client is closing or
         *              gone, its send buffer overflowed, or text is not UTF-8
         * @throws \InvalidArgumentException what this client can never be
         *              sent: an unknown $type, a ping/pong payload over 125
         *              bytes, a close reason over 123, binary or ping/pong on
         *              hixie-75/76
         */
        public function send(mixed $payload, string $type = 'text'): bool {}
        /**
         * Close with $statusCode and php-websocket's reason text.
         * @return bool false when the client is already closing or gone
         * @throws \InvalidArgumentException for a code that may not be sent
         *              (e.g. 1004, 1005, 1006, 1015, 5000)
         */
        public function close(int $statusCode = 1000): bool {}
        public function getClientIp(): string {}
        /** A string, as php-websocket's. */
        public function getClientPort(): string {}
        /** 32 hex digits. */
        public function getClientId(): string {}
        /** The connection id: an int unique in the cluster (for Server::sendTo/closeTo). */
        public function getId(): int {}
        /**
         * Join $group (local; Server::broadcastGroup() reaches members on every node).
         * @return bool false when the client is gone
         * @throws \InvalidArgumentException for a name over 65535 bytes
         */
        public function join(string $group): bool {}
        /** Leave $group (closing leaves every group). */
        public function leave(string $group): bool {}
        /** The application serving this client (null for a client still connected when run() returned). */
        public function getClientApplication(): mixed {}
        /** rfc6455, hybi-08, hybi-07, ..., hixie-76, hixie-75 */
        public function getDraft(): string {}
        public function getPath(): string {}
        public function getQuery(): string {}
        /** @return array<string, string> */
        public function getHeaders(): array {}
        public function getHeader(string $name): ?string {}
        public function getOrigin(): ?string {}
        public function getSubprotocol(): ?string {}
        /** permessage-deflate, deflate-frame, deflate-stream or null */
        public function getExtension(): ?string {}
        public function isSecure(): bool {}
        /** "2.0" for a WebSocket opened as an HTTP/2 stream (RFC 8441), else "1.1" */
        public function getHttpVersion(): string {}
        /** Opened as a stream of an HTTP/2 connection (RFC 8441). */
        public function isHttp2(): bool {}
        public function log(string $message, string $type = 'info'): void {}
    }
}

namespace WebSocket\Application {

    /**
     * php-websocket's base class. This one and StatusApplication are
     * fallbacks: a copy of php-websocket's files that the script requires or
     * autoloads is used instead.
     */
    abstract class Application
    {
        protected static $instances = array();
        protected function __construct() {}
        /** One instance per concrete class. */
        final public static function getInstance() {}
        abstract public function onConnect($connection);
        abstract public function onDisconnect($connection);
        abstract public function onData($data, $client);
        // optional: public function onBinaryData($data, $client)
        /** @return array|false */
        protected function _decodeData($data) {}
        /** @return string|false */
        protected function _encodeData($action, $data) {}
    }

    /** php-websocket's status application; register it as 'status'. */
    class StatusApplication extends Application
    {
        public function onConnect($client) {}
        public function onDisconnect($client) {}
        public function onData($data, $client) {}
        public function setServerInfo($serverInfo) {}
        /** $port is a string, as php-websocket passed it. */
        public function clientConnected($ip, $port) {}
        public function clientDisconnected($ip, $port) {}
        public function clientActivity($port) {}
        public function statusMsg($text, $type = 'info') {}
    }
}
