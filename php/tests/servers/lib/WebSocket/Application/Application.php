<?php
// A user's own application base class in php-websocket's library layout,
// replacing the extension's when the user's autoloader supplies it.

namespace WebSocket\Application;

abstract class Application
{
    protected static $instances = array();

    protected function __construct()
    {
    }

    final public static function getInstance()
    {
        $class = get_called_class();
        if (!isset(self::$instances[$class])) {
            self::$instances[$class] = new $class();
        }
        return self::$instances[$class];
    }

    abstract public function onConnect($connection);

    abstract public function onDisconnect($connection);

    abstract public function onData($data, $client);

    protected function _encodeData($action, $data)
    {
        return json_encode(array('action' => $action, 'data' => $data, 'base' => 'user'));
    }
}
