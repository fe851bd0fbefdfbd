<?php
// php-websocket's DemoApplication (its own file there too, lib/WebSocket/
// Application/DemoApplication.php), without the file upload: used by
// examples/php/status.php and by php/tests.

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
