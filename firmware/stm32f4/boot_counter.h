/*
 * Boot counter in flash, for tests of non-volatile memory (the `counter` build of the STM32F4
 * firmware; behaviour: ../README.md). Included by main.c after console.h.
 *
 * Two slots, flash sectors 10 and 11 (128 KiB each, RM0090 and Renode's STM32F4_FlashController
 * agree on them), each holding at most one record of three words: the count, its complement, and
 * a commit word programmed last. A boot reads both slots, takes the valid record with the highest
 * count (none: 0), and writes count + 1 into the other slot: erase the sector, then program the
 * three words one by one. A power cut anywhere in that sequence leaves the other slot intact, so
 * the next boot finds the old count (and says so when the torn slot is not blank).
 */
#ifndef BOOT_COUNTER_H
#define BOOT_COUNTER_H

#define FLASH_KEYR REG(0x40023C04)
#define FLASH_SR   REG(0x40023C0C)
#define FLASH_CR   REG(0x40023C10)
#define FLASH_KEY1 0x45670123u
#define FLASH_KEY2 0xCDEF89ABu
#define CR_PG      (1u << 0)
#define CR_SER     (1u << 1)
#define CR_SNB(n)  ((uint32_t)(n) << 3)
#define CR_PSIZE32 (2u << 8)
#define CR_STRT    (1u << 16)
#define CR_LOCK    (1u << 31)
#define SR_BSY     (1u << 16)

/* Names this build in its image (the test stand-in recognises it by this string). */
__attribute__((used)) static const char boot_counter_marker[] = "jumpstarter-renode-fw feature=boot-counter";

#define COMMIT 0x600DF00Du
#define BLANK  0xFFFFFFFFu

static const uint32_t slot_sector[2] = {10, 11};
static const uint32_t slot_address[2] = {0x080C0000u, 0x080E0000u};

enum slot_state { SLOT_BLANK, SLOT_VALID, SLOT_TORN };

static enum slot_state slot_read(uint32_t slot, uint32_t *count)
{
    volatile const uint32_t *word = (volatile const uint32_t *)slot_address[slot];
    *count = word[0];
    if (word[0] == BLANK && word[1] == BLANK && word[2] == BLANK)
        return SLOT_BLANK;
    if (word[2] == COMMIT && word[1] == ~word[0])
        return SLOT_VALID;
    return SLOT_TORN;
}

static void flash_wait(void)
{
    while (FLASH_SR & SR_BSY)
        ;
}

/* One erase operation: set up the sector, then STRT. */
static void flash_erase_sector(uint32_t sector)
{
    FLASH_CR = CR_PSIZE32 | CR_SER | CR_SNB(sector);
    FLASH_CR = CR_PSIZE32 | CR_SER | CR_SNB(sector) | CR_STRT;
    flash_wait();
    FLASH_CR = CR_PSIZE32;
}

/* One program operation per word: PG set, the word written, PG cleared (as ST's HAL does). */
static void flash_program_word(uint32_t address, uint32_t value)
{
    FLASH_CR = CR_PSIZE32 | CR_PG;
    REG(address) = value;
    flash_wait();
    FLASH_CR = CR_PSIZE32;
}

static void boot_counter_update(void)
{
    (void)*(volatile const char *)boot_counter_marker; /* referenced: --gc-sections keeps it */
    uint32_t count[2];
    enum slot_state state[2] = {slot_read(0, &count[0]), slot_read(1, &count[1])};
    uint32_t best = 0, current = 0, found = 0;

    for (uint32_t slot = 0; slot < 2; slot++) {
        if (state[slot] == SLOT_TORN) {
            put_str(slot ? "flash: torn record in slot 1 ignored\r\n" : "flash: torn record in slot 0 ignored\r\n");
        } else if (state[slot] == SLOT_VALID && (!found || count[slot] > current)) {
            best = slot;
            current = count[slot];
            found = 1;
        }
    }
    uint32_t next = current + 1;
    uint32_t target = found ? 1 - best : 0;

    if (FLASH_CR & CR_LOCK) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
    flash_erase_sector(slot_sector[target]);
    flash_program_word(slot_address[target], next);
    flash_program_word(slot_address[target] + 4, ~next);
    flash_program_word(slot_address[target] + 8, COMMIT);
    FLASH_CR = CR_LOCK;

    put_str("boots=");
    put_uint(next);
    put_str("\r\n");
}

static void reboot_on(const char *s, uint32_t n)
{
    static const char word[] = "reboot";
    if (n != sizeof word - 1)
        return;
    for (uint32_t i = 0; i < n; i++)
        if (s[i] != word[i])
            return;
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = AIRCR_SYSRESETREQ;
    __asm__ volatile("dsb" ::: "memory");
    for (;;)
        ;
}

#endif
