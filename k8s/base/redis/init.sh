#!/bin/sh
# Writes redis.conf and sentinel.conf for this pod of the mayfly-redis StatefulSet.
# Pod 0 starts as the primary, unless the Sentinels already know another primary (after a
# failover the old primary comes back as a replica, not as a second primary).
set -eu

PASSWORD="$(cat /etc/redis-auth/password)"
HEADLESS="mayfly-redis-headless.${POD_NAMESPACE}.svc.${CLUSTER_DOMAIN}"
ME="${POD_NAME}.${HEADLESS}"
PRIMARY=""

i=0
while [ "$i" -lt "$REPLICAS" ]; do
  peer="mayfly-redis-${i}.${HEADLESS}"
  if [ "$peer" != "$ME" ]; then
    answer="$(REDISCLI_AUTH="$PASSWORD" timeout 3 redis-cli --no-auth-warning -h "$peer" -p 26379 \
      sentinel get-master-addr-by-name "$MASTER_SET" 2>/dev/null | head -n 1 || true)"
    if [ -n "$answer" ]; then
      PRIMARY="$answer"
      break
    fi
  fi
  i=$((i + 1))
done
[ -n "$PRIMARY" ] || PRIMARY="mayfly-redis-0.${HEADLESS}"

# Rate-limit state only: no persistence; when memory is full writes fail and the limiter
# fails open rather than silently dropping limits (noeviction).
cat >/conf/redis.conf <<CONF
port 6379
bind 0.0.0.0 -::*
protected-mode no
dir /data
save ""
appendonly no
maxmemory ${MAXMEMORY}
maxmemory-policy noeviction
requirepass ${PASSWORD}
masterauth ${PASSWORD}
replica-announce-ip ${ME}
CONF
if [ "$PRIMARY" != "$ME" ]; then
  echo "replicaof ${PRIMARY} 6379" >>/conf/redis.conf
fi

cat >/conf/sentinel.conf <<CONF
port 26379
bind 0.0.0.0 -::*
protected-mode no
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${ME}
sentinel monitor ${MASTER_SET} ${PRIMARY} 6379 2
sentinel auth-pass ${MASTER_SET} ${PASSWORD}
sentinel down-after-milliseconds ${MASTER_SET} 5000
sentinel failover-timeout ${MASTER_SET} 60000
sentinel parallel-syncs ${MASTER_SET} 1
requirepass ${PASSWORD}
CONF
chmod 0600 /conf/redis.conf /conf/sentinel.conf
echo "mayfly-redis: ${ME} starts with primary ${PRIMARY}"
