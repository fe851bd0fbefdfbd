<?php
// A user's own StatusApplication in php-websocket's library layout
// (lib/WebSocket/Application/), replacing the extension's: it tells the
// status page which class answered and what type the port hooks received.

namespace WebSocket\Application;

class StatusApplication extends Application
{
    private $clients = array();

    public function onConnect($client)
    {
        $this->clients[$client->getClientId()] = $client;
        $client->send($this->_encodeData('serverInfo', array('edition' => 'user')));
    }

    public function onDisconnect($client)
    {
        unset($this->clients[$client->getClientId()]);
    }

    public function onData($data, $client)
    {
    }

    public function setServerInfo($serverInfo)
    {
        return true;
    }

    public function clientConnected($ip, $port)
    {
        $this->sendAll('userConnected', array('port' => $port, 'type' => gettype($port)));
    }

    public function clientDisconnected($ip, $port)
    {
    }

    public function clientActivity($port)
    {
    }

    private function sendAll($action, $data)
    {
        foreach ($this->clients as $client) {
            $client->send($this->_encodeData($action, $data));
        }
    }
}
