<?php
// Echo daemon: every text and binary message comes back, on every path,
// for every protocol version. The interop suite runs against it:
//
//   php -d extension=target/release/polysocket.so examples/php/echo.php --port 8000
//
// Options: --host H (127.0.0.1), --port P (8000), --cert PEM --key PEM (wss).

class EchoApplication extends \WebSocket\Application\Application
{
    public function onConnect($client)
    {
    }

    public function onDisconnect($client)
    {
    }

    public function onData($data, $client)
    {
        $client->send($data);
    }

    public function onBinaryData($data, $client)
    {
        $client->send($data, 'binary');
    }
}

$options = getopt('', array('host:', 'port:', 'cert:', 'key:'));
$host = isset($options['host']) ? $options['host'] : '127.0.0.1';
$port = isset($options['port']) ? (int)$options['port'] : 8000;
$ssl = isset($options['cert']);

$server = new \WebSocket\Server($host, $port, $ssl, $ssl ? array(
    'cert' => $options['cert'],
    'key' => isset($options['key']) ? $options['key'] : $options['cert'],
) : array());
// An echo server for tests and benchmarks: no limits, any origin.
$server->setMaxClients(1000000);
$server->setCheckOrigin(false);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerApplication('echo', EchoApplication::getInstance());
$server->registerApplication('*', EchoApplication::getInstance());
$server->run();
