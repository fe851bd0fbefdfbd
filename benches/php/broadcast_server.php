<?php
// Broadcast benchmark daemon: a message "b N" from any client makes one
// onData send N bytes to every client connected to /bcast with one
// \WebSocket\Server::broadcast (encoded once); "l N" does the same with a
// foreach over $client->send() (php-websocket's way). The sender then gets
// "t MICROSECONDS": how long that onData took.
//
//   php -d extension=polysocket.so benches/php/broadcast_server.php --port P

class Broadcast extends \WebSocket\Application\Application
{
    private $clients = array();

    public function onConnect($client) { $this->clients[$client->getClientId()] = $client; }
    public function onDisconnect($client) { unset($this->clients[$client->getClientId()]); }
    public function onData($data, $client)
    {
        list($how, $size) = explode(' ', $data);
        $payload = str_repeat('x', (int)$size);
        $t0 = hrtime(true);
        if ($how === 'b') {
            \WebSocket\Server::broadcast($this->clients, $payload);
        } else {
            foreach ($this->clients as $c) {
                $c->send($payload);
            }
        }
        // The time this onData spent handing the message to every client.
        $client->send('t ' . intdiv(hrtime(true) - $t0, 1000));
    }
}

$o = getopt('', array('port:'));
$server = new \WebSocket\Server('127.0.0.1', (int)$o['port'], false);
$server->setMaxClients(100000);
$server->setCheckOrigin(false);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerApplication('bcast', Broadcast::getInstance());
$server->run();
