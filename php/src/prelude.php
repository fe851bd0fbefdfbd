<?php
// php-websocket's application classes, which the polysocket extension
// provides as fallbacks: each is declared only when PHP looks for it and no
// other autoloader (e.g. php-websocket's SplClassLoader over its lib/)
// supplies it, so a user's own copy, required or autoloaded, is the one
// that runs. Run at every request start.
//
// Application is php-websocket's base class; its abstract methods are
// untyped so that php-websocket applications (untyped onData($data, $client)
// and friends) keep compiling. StatusApplication is php-websocket's status
// application: the server calls its hooks when registered as 'status'.

namespace WebSocket\Application;

(static function () {
    $declare = array(
        Application::class => static function () {
            abstract class Application
            {
                protected static $instances = array();

                protected function __construct()
                {
                }

                private function __clone()
                {
                }

                /** One instance per concrete application class. */
                final public static function getInstance()
                {
                    $calledClassName = get_called_class();
                    if (!isset(self::$instances[$calledClassName])) {
                        self::$instances[$calledClassName] = new $calledClassName();
                    }
                    return self::$instances[$calledClassName];
                }

                abstract public function onConnect($connection);

                abstract public function onDisconnect($connection);

                abstract public function onData($data, $client);

                /** The decoded {"action": .., "data": ..} array, or false. */
                protected function _decodeData($data)
                {
                    $decodedData = json_decode($data, true);
                    if ($decodedData === null) {
                        return false;
                    }
                    if (isset($decodedData['action'], $decodedData['data']) === false) {
                        return false;
                    }
                    return $decodedData;
                }

                /** {"action": $action, "data": $data} as JSON, or false without an action. */
                protected function _encodeData($action, $data)
                {
                    if (empty($action)) {
                        return false;
                    }
                    $payload = array(
                        'action' => $action,
                        'data' => $data
                    );
                    return json_encode($payload);
                }
            }
        },
        StatusApplication::class => static function () {
            class StatusApplication extends Application
            {
                private $_clients = array();
                private $_serverClients = array();
                private $_serverInfo = array();
                private $_serverClientCount = 0;

                public function onConnect($client)
                {
                    $id = $client->getClientId();
                    $this->_clients[$id] = $client;
                    $this->_sendServerinfo($client);
                }

                public function onDisconnect($client)
                {
                    $id = $client->getClientId();
                    unset($this->_clients[$id]);
                }

                public function onData($data, $client)
                {
                    // The status page only listens.
                }

                public function setServerInfo($serverInfo)
                {
                    if (is_array($serverInfo)) {
                        $this->_serverInfo = $serverInfo;
                        return true;
                    }
                    return false;
                }

                public function clientConnected($ip, $port)
                {
                    $this->_serverClients[$port] = $ip;
                    $this->_serverClientCount++;
                    $this->statusMsg('Client connected: ' . $ip . ':' . $port);
                    $data = array(
                        'ip' => $ip,
                        'port' => $port,
                        'clientCount' => $this->_serverClientCount,
                    );
                    $encodedData = $this->_encodeData('clientConnected', $data);
                    $this->_sendAll($encodedData);
                }

                public function clientDisconnected($ip, $port)
                {
                    if (!isset($this->_serverClients[$port])) {
                        return false;
                    }
                    unset($this->_serverClients[$port]);
                    $this->_serverClientCount--;
                    $this->statusMsg('Client disconnected: ' . $ip . ':' . $port);
                    $data = array(
                        'port' => $port,
                        'clientCount' => $this->_serverClientCount,
                    );
                    $encodedData = $this->_encodeData('clientDisconnected', $data);
                    $this->_sendAll($encodedData);
                }

                public function clientActivity($port)
                {
                    $encodedData = $this->_encodeData('clientActivity', $port);
                    $this->_sendAll($encodedData);
                }

                public function statusMsg($text, $type = 'info')
                {
                    $data = array(
                        'type' => $type,
                        // php-websocket used strftime('%m-%d %H:%M'), deprecated in PHP 8.1.
                        'text' => '[' . date('m-d H:i') . '] ' . $text,
                    );
                    $encodedData = $this->_encodeData('statusMsg', $data);
                    $this->_sendAll($encodedData);
                }

                private function _sendServerinfo($client)
                {
                    if (count($this->_clients) < 1) {
                        return false;
                    }
                    $currentServerInfo = $this->_serverInfo;
                    $currentServerInfo['clientCount'] = count($this->_serverClients);
                    $currentServerInfo['clients'] = $this->_serverClients;
                    $encodedData = $this->_encodeData('serverInfo', $currentServerInfo);
                    $client->send($encodedData);
                }

                private function _sendAll($encodedData)
                {
                    if (count($this->_clients) < 1) {
                        return false;
                    }
                    // One encode for all listeners (php-websocket looped over send()).
                    \WebSocket\Server::broadcast($this->_clients, $encodedData);
                }
            }
        },
    );
    // Registered before any user code, so PHP asks this loader first: it
    // asks the loaders registered after it before falling back, as if it
    // were registered last. It knows itself through a weak reference: a
    // closure holding itself is a cycle PHP never frees at shutdown.
    $self = null;
    $fallback = static function ($class) use (&$self, $declare) {
        if (!isset($declare[$class])) {
            return;
        }
        foreach (\spl_autoload_functions() as $loader) {
            if ($loader !== $self->get()) {
                $loader($class);
                if (\class_exists($class, false)) {
                    return;
                }
            }
        }
        $declare[$class]();
    };
    $self = \WeakReference::create($fallback);
    \spl_autoload_register($fallback);
})();
