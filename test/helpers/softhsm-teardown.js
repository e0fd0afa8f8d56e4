'use strict';
module.exports = require('./softhsm-setup').teardown;
