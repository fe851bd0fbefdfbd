<?php
// Chat daemon: every message goes to everyone in the room, encoded once
// (\WebSocket\Server::broadcast). Open examples/php/chat.html in a browser.
//
//   php -d extension=polysocket.so examples/php/chat.php [--port 8000]

class ChatApplication extends \WebSocket\Application\Application
{
    private $clients = array();

    public function onConnect($client)
    {
        $this->clients[$client->getClientId()] = $client;
        $this->announce('joined', $client);
    }

    public function onDisconnect($client)
    {
        unset($this->clients[$client->getClientId()]);
        $this->announce('left', $client);
    }

    public function onData($data, $client)
    {
        $decoded = $this->_decodeData($data);
        if ($decoded === false || $decoded['action'] !== 'say') {
            return;
        }
        $text = mb_substr((string)$decoded['data'], 0, 1000);
        \WebSocket\Server::broadcast($this->clients, $this->_encodeData('said', array(
            'from' => $client->getClientIp() . ':' . $client->getClientPort(),
            'text' => $text,
        )));
    }

    private function announce($what, $client)
    {
        \WebSocket\Server::broadcast($this->clients, $this->_encodeData($what, array(
            'who' => $client->getClientIp() . ':' . $client->getClientPort(),
            'count' => count($this->clients),
        )));
    }
}

$options = getopt('', array('port:'));
$server = new \WebSocket\Server('127.0.0.1', isset($options['port']) ? (int)$options['port'] : 8000, false);
$server->setMaxClients(1000);
$server->setCheckOrigin(false);     // the page is opened from disk (Origin: null)
$server->setMaxConnectionsPerIp(100);
$server->setMaxRequestsPerMinute(600);
$server->registerApplication('chat', ChatApplication::getInstance());
$server->run();
