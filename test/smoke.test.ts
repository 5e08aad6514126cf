import t from 'tap';
import { version } from '../src/version.js';
t.match(version, /^\d+\.\d+\.\d+/);
