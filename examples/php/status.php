<?php
// php-websocket's example daemon, unchanged but for the autoloader lines:
// the status application (watch it with examples/php/status.html) and the
// demo application.
//
//   php -d extension=polysocket.so examples/php/status.php
//   then open examples/php/status.html?ws=ws://127.0.0.1:8000/status

class DemoApplication extends \WebSocket\Application\Application
{
    private $_clients = array();

    public function onConnect($client)
    {
        $id = $client->getClientId();
        $this->_clients[$id] = $client;
    }

    public function onDisconnect($client)
    {
        $id = $client->getClientId();
        unset($this->_clients[$id]);
    }

    public function onData($data, $client)
    {
        $decodedData = $this->_decodeData($data);
        if ($decodedData === false) {
            // @todo: invalid request trigger error...
        }
        $actionName = '_action' . ucfirst($decodedData['action']);
        if (method_exists($this, $actionName)) {
            call_user_func(array($this, $actionName), $decodedData['data']);
        }
    }

    private function _actionEcho($text)
    {
        $encodedData = $this->_encodeData('echo', $text);
        foreach ($this->_clients as $sendto) {
            $sendto->send($encodedData);
        }
    }
}

$server = new \WebSocket\Server('127.0.0.1', 8000, false);

// server settings:
$server->setMaxClients(100);
$server->setCheckOrigin(false);     // true + setAllowedOrigin() for a page served over HTTP
$server->setAllowedOrigin('foo.lh');
$server->setMaxConnectionsPerIp(100);
$server->setMaxRequestsPerMinute(2000);

$server->registerApplication('status', \WebSocket\Application\StatusApplication::getInstance());
$server->registerApplication('demo', DemoApplication::getInstance());
$server->run();
